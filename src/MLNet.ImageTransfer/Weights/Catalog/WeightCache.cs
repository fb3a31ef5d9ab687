using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;

namespace MLNet.ImageTransfer.Weights;

/// <summary>What the cache holds for an entry.</summary>
public enum WeightCacheState
{
    /// <summary>Nothing.</summary>
    Missing,
    /// <summary>Part of a download that broke off; the next download resumes it.</summary>
    Partial,
    /// <summary>A file under the published name that has not been verified yet (e.g. put there by hand); verified on first use.</summary>
    Unverified,
    /// <summary>The verified published file.</summary>
    Verified,
}

/// <summary>
/// The download cache of catalog weights: one folder, each file under its published name (so a file from torch.hub's
/// or Keras' cache can be copied in as it is). A file is used only after its hash matched the publisher's: a download
/// goes to <c>NAME.partial</c>, is verified, then renamed (never a final-named file that is not verified); the
/// verified size and modification time are kept in <c>NAME.verified</c>, so a later use re-checks cheaply and a
/// changed file is hashed again. A transfer that breaks is resumed with an HTTP Range request (restarted when the
/// server ignores the range or the file changed); <c>NAME.lock</c> keeps two processes from writing the same file.
/// </summary>
public sealed class WeightCache
{
    /// <summary>Overrides the cache folder (the folder itself, not a parent).</summary>
    public const string EnvironmentVariable = "MLNET_IMAGETRANSFER_CACHE";
    /// <summary>Set to <c>1</c> or <c>true</c> to never download (a missing file is an error naming where to put it).</summary>
    public const string OfflineEnvironmentVariable = "MLNET_IMAGETRANSFER_OFFLINE";

    const string VerifiedSuffix = ".verified", PartialSuffix = ".partial", PartialInfoSuffix = ".partial.json", LockSuffix = ".lock";

    static readonly Lazy<HttpClient> SharedClient = new(() =>
    {
        var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(30),
            // Ranges count bytes of the file as stored: no transparent decompression.
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        };
        var client = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
        var version = typeof(WeightCache).Assembly.GetName().Version?.ToString(3) ?? "0";
        client.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("MLNet.ImageTransfer", version));
        return client;
    });

    /// <param name="directory">The cache folder; null means <see cref="DefaultDirectory"/>.</param>
    public WeightCache(string? directory = null) => Directory = Path.GetFullPath(directory ?? DefaultDirectory);

    /// <summary>The cache folder.</summary>
    public string Directory { get; }

    /// <summary>
    /// <see cref="EnvironmentVariable"/> when set; else <c>%LOCALAPPDATA%\mlnet-imagetransfer\weights</c> on Windows and
    /// <c>$XDG_CACHE_HOME/mlnet-imagetransfer/weights</c> (<c>~/.cache/…</c> without it) on Linux and macOS.
    /// </summary>
    public static string DefaultDirectory
    {
        get
        {
            var overridden = Environment.GetEnvironmentVariable(EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(overridden)) return Path.GetFullPath(overridden);
            if (OperatingSystem.IsWindows())
                return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "mlnet-imagetransfer", "weights");
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            // The XDG specification ignores relative paths.
            var root = !string.IsNullOrWhiteSpace(xdg) && Path.IsPathRooted(xdg) ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            return Path.Combine(root, "mlnet-imagetransfer", "weights");
        }
    }

    /// <summary>True when <see cref="OfflineEnvironmentVariable"/> is <c>1</c> or <c>true</c>.</summary>
    public static bool OfflineByEnvironment => Environment.GetEnvironmentVariable(OfflineEnvironmentVariable)?.Trim().ToLowerInvariant() is "1" or "true" or "yes";

    /// <summary>Where the entry's file is (or will be) in this cache: the place to put it by hand for offline use.</summary>
    public string PathFor(PretrainedWeightEntry entry) => Path.Combine(Directory, entry.FileName);

    /// <summary>What the cache holds for the entry, without hashing anything.</summary>
    public WeightCacheState StateOf(PretrainedWeightEntry entry)
    {
        var path = PathFor(entry);
        if (File.Exists(path)) return IsVerified(path) ? WeightCacheState.Verified : WeightCacheState.Unverified;
        return File.Exists(path + PartialSuffix) ? WeightCacheState.Partial : WeightCacheState.Missing;
    }

    /// <summary>The verified local file of a downloadable entry, downloading it first if needed (see the class remarks).</summary>
    /// <exception cref="WeightDownloadException">Offline, unreachable, an HTTP error, or transfers that kept breaking; the message says where to put the file by hand.</exception>
    /// <exception cref="WeightHashMismatchException">The file received is not the published one (it was deleted).</exception>
    public string Get(PretrainedWeightEntry entry, PretrainedWeightOptions? options = null, CancellationToken cancellationToken = default)
        => GetAsync(entry, options, cancellationToken).GetAwaiter().GetResult();

    /// <inheritdoc cref="Get"/>
    public async Task<string> GetAsync(PretrainedWeightEntry entry, PretrainedWeightOptions? options = null, CancellationToken cancellationToken = default)
        => (await FetchAsync(entry, options ?? new PretrainedWeightOptions(), cancellationToken).ConfigureAwait(false)).Path;

    internal async Task<(string Path, bool Downloaded)> FetchAsync(PretrainedWeightEntry entry, PretrainedWeightOptions options, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(entry);
        if (entry.Url is null)
            throw new ArgumentException($"'{entry.Name}' is not downloaded: it comes in a NuGet package; PretrainedWeightSource.Resolve finds it.", nameof(entry));
        var target = PathFor(entry);
        if (File.Exists(target) && IsVerified(target)) return (target, false);

        System.IO.Directory.CreateDirectory(Directory);
        await using var held = await LockAsync(entry, target, options, ct).ConfigureAwait(false);
        string? removed = null;
        if (File.Exists(target))
        {
            // Another process may have finished it while we waited; or it was put here by hand; or it changed on disk.
            if (IsVerified(target)) return (target, false);
            var (sha256, md5) = await WeightFileHashes.ComputeAsync(target, entry.Name, options.Progress, ct).ConfigureAwait(false);
            if (entry.Hash.Matches(sha256, md5))
            {
                MarkVerified(target, sha256);
                return (target, false);
            }
            removed = $"the cached {target} was not the published file ({entry.Hash.Actual(sha256, md5)}, expected {entry.Hash}) and was deleted";
            Delete(target);
            Delete(target + VerifiedSuffix);
        }
        if (options.Offline ?? OfflineByEnvironment)
            throw new WeightDownloadException(
                $"'{entry.Name}' is not in the weight cache and downloads are off ({OfflineEnvironmentVariable}){(removed is null ? "" : $"; {removed}")}. " +
                $"Download {entry.Url} on another machine and save it as {target} (it is verified before use), or pass the file's path instead of the name.",
                entry.Name, entry.Url, target);
        await DownloadAsync(entry, target, options, removed, ct).ConfigureAwait(false);
        return (target, true);
    }

    async Task DownloadAsync(PretrainedWeightEntry entry, string target, PretrainedWeightOptions options, string? removed, CancellationToken ct)
    {
        var partial = target + PartialSuffix;
        var http = options.HttpClient ?? SharedClient.Value;
        int attempts = Math.Max(1, options.Attempts);
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                await TransferAsync(entry, target, http, options, removed, ct).ConfigureAwait(false);
                break;
            }
            catch (TransferBrokenException) when (attempt < attempts)
            {
                // The next transfer resumes from the bytes kept (its progress reports say Resumed).
                await Task.Delay(TimeSpan.FromMilliseconds(250 * attempt), ct).ConfigureAwait(false);
            }
            catch (TransferBrokenException e)
            {
                long kept = File.Exists(partial) ? new FileInfo(partial).Length : 0;
                throw Failure(entry, target, $"the transfer broke {attempts} time(s), last: {e.Message}. " +
                    (kept > 0 ? $"The {kept.ToString("N0", CultureInfo.InvariantCulture)} bytes received are kept in {partial}; the next attempt resumes from there" : "Nothing was kept"),
                    removed, null, e);
            }
        }

        var (sha256, md5) = await WeightFileHashes.ComputeAsync(partial, entry.Name, options.Progress, ct).ConfigureAwait(false);
        if (!entry.Hash.Matches(sha256, md5))
        {
            Delete(partial);
            Delete(target + PartialInfoSuffix);
            var actual = entry.Hash.Actual(sha256, md5);
            throw new WeightHashMismatchException(
                $"The file downloaded for '{entry.Name}' from {entry.Url} is not the published one: {actual}, expected {entry.Hash}. " +
                $"It was deleted; run again to download it anew (a repeated mismatch means the server or a proxy serves other bytes). " +
                $"A copy obtained elsewhere can be saved as {target}.",
                entry.Name, entry.Url, target, entry.Hash.ToString(), actual);
        }
        File.Move(partial, target, overwrite: true);
        Delete(target + PartialInfoSuffix);
        MarkVerified(target, sha256);
    }

    /// <summary>One HTTP transfer into <c>NAME.partial</c>, resuming what is there when the server allows it.</summary>
    static async Task TransferAsync(PretrainedWeightEntry entry, string target, HttpClient http, PretrainedWeightOptions options, string? removed, CancellationToken ct)
    {
        var partial = target + PartialSuffix;
        var infoPath = target + PartialInfoSuffix;
        long offset = File.Exists(partial) ? new FileInfo(partial).Length : 0;
        var validator = offset > 0 ? ReadPartialInfo(infoPath) : null;
        if (validator is not null && validator.Url != entry.Url) (offset, validator) = (0, null);

        using var request = new HttpRequestMessage(HttpMethod.Get, entry.Url);
        if (offset > 0)
        {
            request.Headers.Range = new RangeHeaderValue(offset, null);
            // If-Range: the server sends the whole file instead of the range when the file changed since the partial began.
            if (validator?.ETag is { } etag && EntityTagHeaderValue.TryParse(etag, out var tag) && !tag.IsWeak)
                request.Headers.IfRange = new RangeConditionHeaderValue(tag);
            else if (validator?.LastModified is { } modified)
                request.Headers.IfRange = new RangeConditionHeaderValue(modified);
        }

        using var stall = CancellationTokenSource.CreateLinkedTokenSource(ct);
        stall.CancelAfter(options.StallTimeout);
        HttpResponseMessage response;
        try
        {
            response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, stall.Token).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw Failure(entry, target, e.Message, removed, null, e);
        }
        catch (OperationCanceledException e) when (!ct.IsCancellationRequested)
        {
            throw Failure(entry, target, $"no answer within {options.StallTimeout.TotalSeconds:0} s", removed, null, e);
        }

        using (response)
        {
            if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable && offset > 0)
            {
                Delete(partial);
                Delete(infoPath);
                throw new TransferBrokenException("the server cannot resume the partial file (HTTP 416); starting over");
            }
            if (!response.IsSuccessStatusCode)
                throw Failure(entry, target, $"HTTP {(int)response.StatusCode} ({response.ReasonPhrase ?? response.StatusCode.ToString()})", removed, response.StatusCode);

            var range = response.Content.Headers.ContentRange;
            bool resume = offset > 0 && response.StatusCode == HttpStatusCode.PartialContent && range?.From == offset;
            if (response.StatusCode == HttpStatusCode.PartialContent && !resume)
            {
                Delete(partial);
                Delete(infoPath);
                throw new TransferBrokenException($"the server sent a range that was not asked for ({range}); starting over");
            }
            // A 200 answer to a range request: the server ignores ranges, or the file changed (If-Range). Start from zero.
            if (!resume) offset = 0;
            long? total = resume ? range!.Length ?? offset + response.Content.Headers.ContentLength : response.Content.Headers.ContentLength;
            if (!resume)
                WritePartialInfo(infoPath, new PartialInfo(entry.Url!, response.Headers.ETag?.ToString(), response.Content.Headers.LastModified));

            await using var file = new FileStream(partial, resume ? FileMode.Append : FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true);
            long done = offset;
            try
            {
                await using var body = await response.Content.ReadAsStreamAsync(stall.Token).ConfigureAwait(false);
                var buffer = new byte[1 << 16];
                var sinceReport = Stopwatch.StartNew();
                options.Progress?.Report(new WeightDownloadProgress(entry.Name, WeightDownloadStage.Downloading, done, total, resume));
                while (true)
                {
                    stall.CancelAfter(options.StallTimeout);
                    int n = await body.ReadAsync(buffer, stall.Token).ConfigureAwait(false);
                    if (n == 0) break;
                    await file.WriteAsync(buffer.AsMemory(0, n), ct).ConfigureAwait(false);
                    done += n;
                    if (sinceReport.ElapsedMilliseconds >= 100)
                    {
                        options.Progress?.Report(new WeightDownloadProgress(entry.Name, WeightDownloadStage.Downloading, done, total, resume));
                        sinceReport.Restart();
                    }
                }
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                throw new TransferBrokenException($"no data for {options.StallTimeout.TotalSeconds:0} s after {done.ToString("N0", CultureInfo.InvariantCulture)} bytes");
            }
            catch (Exception e) when (e is IOException or HttpRequestException && !ct.IsCancellationRequested)
            {
                throw new TransferBrokenException($"{e.Message} after {done.ToString("N0", CultureInfo.InvariantCulture)} bytes", e);
            }
            options.Progress?.Report(new WeightDownloadProgress(entry.Name, WeightDownloadStage.Downloading, done, total, resume));
            if (total is long expected && done != expected)
                throw new TransferBrokenException($"the transfer ended after {done.ToString("N0", CultureInfo.InvariantCulture)} of {expected.ToString("N0", CultureInfo.InvariantCulture)} bytes");
        }
    }

    static WeightDownloadException Failure(PretrainedWeightEntry entry, string target, string problem, string? removed, HttpStatusCode? status, Exception? inner = null)
        => new($"Could not download '{entry.Name}' from {entry.Url}: {problem}.{(removed is null ? "" : $" Also, {removed}.")} " +
            $"To use it without downloading, save that file as {target} (it is verified before use), or pass the file's path instead of the name.",
            entry.Name, entry.Url, target, status, inner);

    static async Task<FileStream> LockAsync(PretrainedWeightEntry entry, string target, PretrainedWeightOptions options, CancellationToken ct)
    {
        var path = target + LockSuffix;
        bool reported = false;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                // FileShare.None is an exclusive advisory lock (flock on Unix): released when the holder closes it or dies.
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1);
            }
            catch (IOException) when (File.Exists(path))
            {
                if (!reported) options.Progress?.Report(new WeightDownloadProgress(entry.Name, WeightDownloadStage.WaitingForLock, 0, null, false));
                reported = true;
                await Task.Delay(200, ct).ConfigureAwait(false);
            }
        }
    }

    sealed record VerifiedStamp(long Size, long ModifiedTicks, string Sha256);
    sealed record PartialInfo(string Url, string? ETag, DateTimeOffset? LastModified);

    static bool IsVerified(string path)
    {
        try
        {
            var stamp = JsonSerializer.Deserialize<VerifiedStamp>(File.ReadAllText(path + VerifiedSuffix));
            var info = new FileInfo(path);
            return stamp is not null && info.Exists && stamp.Size == info.Length && stamp.ModifiedTicks == info.LastWriteTimeUtc.Ticks;
        }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    static void MarkVerified(string path, string sha256)
    {
        var info = new FileInfo(path);
        WriteAtomically(path + VerifiedSuffix, JsonSerializer.Serialize(new VerifiedStamp(info.Length, info.LastWriteTimeUtc.Ticks, sha256)));
    }

    static PartialInfo? ReadPartialInfo(string path)
    {
        try { return File.Exists(path) ? JsonSerializer.Deserialize<PartialInfo>(File.ReadAllText(path)) : null; }
        catch (Exception e) when (e is IOException or JsonException) { return null; }
    }

    static void WritePartialInfo(string path, PartialInfo info) => WriteAtomically(path, JsonSerializer.Serialize(info));

    static void WriteAtomically(string path, string text)
    {
        var temporary = path + ".tmp";
        File.WriteAllText(temporary, text);
        File.Move(temporary, path, overwrite: true);
    }

    static void Delete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
    }

    /// <summary>A transfer broke off after it began; the partial file is kept and the next attempt resumes it.</summary>
    sealed class TransferBrokenException(string message, Exception? inner = null) : IOException(message, inner);
}

/// <summary>SHA-256 and MD5 of a file in one pass (the two hashes publishers give).</summary>
internal static class WeightFileHashes
{
    public static async Task<(string Sha256, string Md5)> ComputeAsync(string path, string name, IProgress<WeightDownloadProgress>? progress, CancellationToken ct)
    {
        using var sha256 = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
        long total = stream.Length, done = 0;
        var buffer = new byte[1 << 20];
        var sinceReport = Stopwatch.StartNew();
        progress?.Report(new WeightDownloadProgress(name, WeightDownloadStage.Verifying, 0, total, false));
        int n;
        while ((n = await stream.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
        {
            sha256.AppendData(buffer, 0, n);
            md5.AppendData(buffer, 0, n);
            done += n;
            if (sinceReport.ElapsedMilliseconds >= 100)
            {
                progress?.Report(new WeightDownloadProgress(name, WeightDownloadStage.Verifying, done, total, false));
                sinceReport.Restart();
            }
        }
        progress?.Report(new WeightDownloadProgress(name, WeightDownloadStage.Verifying, done, total, false));
        return (Convert.ToHexStringLower(sha256.GetHashAndReset()), Convert.ToHexStringLower(md5.GetHashAndReset()));
    }

    public static (string Sha256, string Md5) Compute(string path) => ComputeAsync(path, "", null, CancellationToken.None).GetAwaiter().GetResult();
}
