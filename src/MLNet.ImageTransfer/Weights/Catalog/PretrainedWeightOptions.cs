namespace MLNet.ImageTransfer.Weights;

/// <summary>Where and how <see cref="PretrainedWeightSource.Resolve"/> finds or downloads catalog weights. Every member is optional.</summary>
public sealed class PretrainedWeightOptions
{
    /// <summary>The download cache folder; null means <see cref="WeightCache.DefaultDirectory"/> (environment, then the platform's cache folder).</summary>
    public string? CacheDirectory { get; init; }

    /// <summary>Receives download progress (bytes done and total, when the server says), waits for another process, verification.</summary>
    public IProgress<WeightDownloadProgress>? Progress { get; init; }

    /// <summary>
    /// Never use the network: a file that is not in the cache is an error naming the path to put it at. Null means the
    /// <see cref="WeightCache.OfflineEnvironmentVariable"/> setting (offline when it is <c>1</c> or <c>true</c>).
    /// </summary>
    public bool? Offline { get; init; }

    /// <summary>Transfers per download: a transfer that breaks is resumed from the bytes already received (HTTP Range).</summary>
    public int Attempts { get; init; } = 3;

    /// <summary>A transfer that receives nothing for this long is broken off (and resumed while attempts remain).</summary>
    public TimeSpan StallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The HTTP client to download with; null uses a shared one (no overall timeout: large files take minutes).</summary>
    public HttpClient? HttpClient { get; init; }

    /// <summary>The NuGet packages folder searched for package entries; null means <c>NUGET_PACKAGES</c>, else <c>~/.nuget/packages</c>.</summary>
    public string? NuGetPackagesDirectory { get; init; }

    /// <summary>The application folder searched first for package entries (where the package's build step copies them); null means the running application's.</summary>
    public string? ApplicationDirectory { get; init; }
}

/// <summary>What a download is doing.</summary>
public enum WeightDownloadStage
{
    /// <summary>Another process holds the file's lock (it is downloading the same file).</summary>
    WaitingForLock,
    /// <summary>Bytes are arriving.</summary>
    Downloading,
    /// <summary>The received file is being hashed before it is used.</summary>
    Verifying,
}

/// <summary>A progress report of a download.</summary>
/// <param name="Name">The catalog entry.</param>
/// <param name="Stage">Waiting for another process, downloading, or verifying.</param>
/// <param name="BytesDone">Bytes of the file on disk so far (a resumed transfer starts from what was kept).</param>
/// <param name="TotalBytes">The file's size, when the server sends it.</param>
/// <param name="Resumed">True when this transfer continues a partial file.</param>
public sealed record WeightDownloadProgress(string Name, WeightDownloadStage Stage, long BytesDone, long? TotalBytes, bool Resumed);
