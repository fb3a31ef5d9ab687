using System.Net;
using System.Security.Cryptography;
using MLNet.ImageTransfer.Weights;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// The download cache against a loopback server: verified placement, reuse without a request, wrong hashes, broken
/// transfers resumed by Range, servers that ignore ranges or changed the file, HTTP errors, offline use, corrupted cache
/// files, two downloads of one file at once, cancellation. Nothing leaves 127.0.0.1 or the test's temp folder.
/// </summary>
public class WeightDownloadTests
{
    internal static byte[] Content(int length = 300_000, int seed = 1)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    internal static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    internal static PretrainedWeightEntry Entry(string url, byte[] content, WeightHashAlgorithm algorithm = WeightHashAlgorithm.Sha256, string fileName = "tiny-weights.bin")
        => new()
        {
            Name = "tiny.test_in1k",
            Architecture = "resnet18",
            Source = WeightPublisher.Torchvision,
            Format = WeightFormat.SafeTensors,
            Url = url,
            FileName = fileName,
            Hash = new WeightHash(algorithm, algorithm switch
            {
                WeightHashAlgorithm.Sha256Prefix => Sha256(content)[..8],
                WeightHashAlgorithm.Md5 => Convert.ToHexStringLower(MD5.HashData(content)),
                _ => Sha256(content),
            }),
            Preprocessing = new PretrainedPreprocessing("torchvision", 256, 224, "bilinear", null),
        };

    sealed class Recorder : IProgress<WeightDownloadProgress>
    {
        public List<WeightDownloadProgress> Reports { get; } = [];
        public void Report(WeightDownloadProgress value) { lock (Reports) Reports.Add(value); }
    }

    static PretrainedWeightOptions Options(string cache, IProgress<WeightDownloadProgress>? progress = null, int attempts = 3)
        => new() { CacheDirectory = cache, Progress = progress, Attempts = attempts, Offline = false, StallTimeout = TimeSpan.FromSeconds(20) };

    static string[] CacheFiles(string cache) => Directory.GetFiles(cache).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToArray()!;

    [Theory]
    [InlineData(WeightHashAlgorithm.Sha256)]
    [InlineData(WeightHashAlgorithm.Sha256Prefix)]
    [InlineData(WeightHashAlgorithm.Md5)]
    public void A_good_download_is_verified_placed_and_reused_without_a_request(WeightHashAlgorithm algorithm)
    {
        var file = Content();
        using var server = new LoopbackHttpServer(r => LoopbackHttpServer.Serve(r, file));
        var cache = TestData.NewTempDir("weights-good");
        var entry = Entry(server.Url("models/tiny-weights.bin"), file, algorithm);
        var progress = new Recorder();

        var path = new WeightCache(cache).Get(entry, Options(cache, progress));

        Assert.Equal(Path.Combine(cache, "tiny-weights.bin"), path);
        Assert.Equal(file, File.ReadAllBytes(path));
        Assert.Equal(["tiny-weights.bin", "tiny-weights.bin.lock", "tiny-weights.bin.verified"], CacheFiles(cache));
        Assert.Equal(WeightCacheState.Verified, new WeightCache(cache).StateOf(entry));
        var downloading = progress.Reports.Where(p => p.Stage == WeightDownloadStage.Downloading).ToList();
        Assert.Equal(file.Length, downloading[^1].BytesDone);
        Assert.All(downloading, p => Assert.Equal(file.Length, p.TotalBytes));
        Assert.Contains(progress.Reports, p => p.Stage == WeightDownloadStage.Verifying);

        var again = new WeightCache(cache).Get(entry, Options(cache));
        Assert.Equal(path, again);
        Assert.Single(server.Requests);
        Assert.Equal("/models/tiny-weights.bin", server.Requests[0].Path);
        Assert.Null(server.Requests[0].Header("Range"));
    }

    [Fact]
    public void A_wrong_hash_is_an_error_naming_both_hashes_and_nothing_is_left_under_the_final_name()
    {
        var file = Content();
        var published = Content(seed: 2);
        using var server = new LoopbackHttpServer(r => LoopbackHttpServer.Serve(r, file));
        var cache = TestData.NewTempDir("weights-bad-hash");
        var entry = Entry(server.Url("tiny-weights.bin"), published);

        var e = Assert.Throws<WeightHashMismatchException>(() => new WeightCache(cache).Get(entry, Options(cache)));

        Assert.Contains(entry.Url!, e.Message);
        Assert.Contains(Sha256(published), e.Message);
        Assert.Contains(Sha256(file), e.Message);
        Assert.Equal($"sha256 {Sha256(published)}", e.Expected);
        Assert.Equal($"sha256 {Sha256(file)}", e.Actual);
        Assert.False(File.Exists(Path.Combine(cache, "tiny-weights.bin")));
        Assert.False(File.Exists(Path.Combine(cache, "tiny-weights.bin.partial")));
        Assert.Equal(WeightCacheState.Missing, new WeightCache(cache).StateOf(entry));
    }

    [Fact]
    public void A_transfer_that_breaks_is_resumed_with_a_range_request()
    {
        var file = Content();
        using var server = new LoopbackHttpServer(r => LoopbackHttpServer.Serve(r, file, cutAfter: r.Index == 0 ? 100_000 : null));
        var cache = TestData.NewTempDir("weights-resume");
        var entry = Entry(server.Url("tiny-weights.bin"), file);
        var progress = new Recorder();

        var path = new WeightCache(cache).Get(entry, Options(cache, progress));

        Assert.Equal(file, File.ReadAllBytes(path));
        Assert.Equal(2, server.Requests.Count);
        Assert.Equal("bytes=100000-", server.Requests[1].Header("Range"));
        Assert.Equal("\"v1\"", server.Requests[1].Header("If-Range"));
        Assert.Contains(progress.Reports, p => p.Resumed && p.BytesDone == 100_000);
        Assert.False(File.Exists(path + ".partial"));
    }

    [Fact]
    public void A_broken_transfer_keeps_its_bytes_for_the_next_call_which_resumes()
    {
        var file = Content();
        using var server = new LoopbackHttpServer(r => LoopbackHttpServer.Serve(r, file, cutAfter: r.Index == 0 ? 120_000 : null));
        var cache = TestData.NewTempDir("weights-resume-later");
        var entry = Entry(server.Url("tiny-weights.bin"), file);
        var target = Path.Combine(cache, "tiny-weights.bin");

        var e = Assert.Throws<WeightDownloadException>(() => new WeightCache(cache).Get(entry, Options(cache, attempts: 1)));
        Assert.Contains(entry.Url!, e.Message);
        Assert.Contains("120,000 bytes received are kept", e.Message);
        Assert.Equal(target, e.ManualPath);
        Assert.False(File.Exists(target));
        Assert.Equal(120_000, new FileInfo(target + ".partial").Length);
        Assert.Equal(WeightCacheState.Partial, new WeightCache(cache).StateOf(entry));

        var path = new WeightCache(cache).Get(entry, Options(cache, attempts: 1));
        Assert.Equal(file, File.ReadAllBytes(path));
        Assert.Equal("bytes=120000-", server.Requests[1].Header("Range"));
    }

    [Fact]
    public void A_server_that_ignores_ranges_makes_the_download_start_from_zero()
    {
        var file = Content();
        using var server = new LoopbackHttpServer(r => LoopbackHttpServer.Serve(r, file, honourRange: false, cutAfter: r.Index == 0 ? 90_000 : null));
        var cache = TestData.NewTempDir("weights-no-range");
        var entry = Entry(server.Url("tiny-weights.bin"), file);

        var path = new WeightCache(cache).Get(entry, Options(cache));

        Assert.Equal(file, File.ReadAllBytes(path));
        Assert.Equal(2, server.Requests.Count);
        Assert.Equal("bytes=90000-", server.Requests[1].Header("Range")); // asked, answered with the whole file (200)
    }

    [Fact]
    public void A_file_that_changed_on_the_server_since_the_partial_began_is_downloaded_anew()
    {
        var before = Content(seed: 3);
        var after = Content(seed: 4);
        using var server = new LoopbackHttpServer(r => r.Index == 0
            ? LoopbackHttpServer.Serve(r, before, etag: "\"old\"", cutAfter: 150_000)
            : LoopbackHttpServer.Serve(r, after, etag: "\"new\""));
        var cache = TestData.NewTempDir("weights-changed");
        var entry = Entry(server.Url("tiny-weights.bin"), after);

        var path = new WeightCache(cache).Get(entry, Options(cache));

        Assert.Equal(after, File.ReadAllBytes(path));
        Assert.Equal("\"old\"", server.Requests[1].Header("If-Range"));
    }

    [Theory]
    [InlineData(404)]
    [InlineData(500)]
    public void An_HTTP_error_names_the_status_the_URL_and_where_to_put_the_file(int status)
    {
        using var server = new LoopbackHttpServer(_ => new LoopbackHttpServer.Response(status, "no such file"u8.ToArray()));
        var cache = TestData.NewTempDir("weights-http-error");
        var entry = Entry(server.Url("missing/tiny-weights.bin"), Content());

        var e = Assert.Throws<WeightDownloadException>(() => new WeightCache(cache).Get(entry, Options(cache)));

        Assert.Equal((HttpStatusCode)status, e.StatusCode);
        Assert.Contains($"HTTP {status}", e.Message);
        Assert.Contains(entry.Url!, e.Message);
        Assert.Contains(Path.Combine(cache, "tiny-weights.bin"), e.Message);
        Assert.Equal(Path.Combine(cache, "tiny-weights.bin"), e.ManualPath);
        Assert.Single(server.Requests); // an HTTP error is not retried
        Assert.False(File.Exists(Path.Combine(cache, "tiny-weights.bin")));
    }

    [Fact]
    public void An_unreachable_server_names_the_URL_and_where_to_put_the_file()
    {
        int port;
        using (var server = new LoopbackHttpServer(_ => throw new InvalidOperationException()))
            port = server.Port; // stopped: nothing listens there any more
        var cache = TestData.NewTempDir("weights-unreachable");
        var entry = Entry($"http://127.0.0.1:{port}/tiny-weights.bin", Content());

        var e = Assert.Throws<WeightDownloadException>(() => new WeightCache(cache).Get(entry, Options(cache)));

        Assert.Null(e.StatusCode);
        Assert.Contains(entry.Url!, e.Message);
        Assert.Contains(Path.Combine(cache, "tiny-weights.bin"), e.Message);
    }

    [Fact]
    public void Offline_a_missing_file_is_an_error_without_a_request_and_a_file_put_by_hand_is_verified_and_used()
    {
        var file = Content();
        using var server = new LoopbackHttpServer(r => LoopbackHttpServer.Serve(r, file));
        var cache = TestData.NewTempDir("weights-offline");
        var entry = Entry(server.Url("tiny-weights.bin"), file);
        var offline = new PretrainedWeightOptions { CacheDirectory = cache, Offline = true };

        var e = Assert.Throws<WeightDownloadException>(() => new WeightCache(cache).Get(entry, offline));
        Assert.Contains(entry.Url!, e.Message);
        Assert.Contains(Path.Combine(cache, "tiny-weights.bin"), e.Message);
        Assert.Contains(WeightCache.OfflineEnvironmentVariable, e.Message);

        File.WriteAllBytes(Path.Combine(cache, "tiny-weights.bin"), file);
        Assert.Equal(WeightCacheState.Unverified, new WeightCache(cache).StateOf(entry));
        Assert.Equal(Path.Combine(cache, "tiny-weights.bin"), new WeightCache(cache).Get(entry, offline));
        Assert.Equal(WeightCacheState.Verified, new WeightCache(cache).StateOf(entry));
        Assert.Empty(server.Requests);
    }

    [Fact]
    public void A_corrupted_cache_file_is_detected_deleted_and_downloaded_again()
    {
        var file = Content();
        using var server = new LoopbackHttpServer(r => LoopbackHttpServer.Serve(r, file));
        var cache = TestData.NewTempDir("weights-corrupt");
        var entry = Entry(server.Url("tiny-weights.bin"), file);
        var path = new WeightCache(cache).Get(entry, Options(cache));

        var corrupted = (byte[])file.Clone();
        corrupted[1234] ^= 0xFF;
        File.WriteAllBytes(path, corrupted);
        File.SetLastWriteTimeUtc(path, File.GetLastWriteTimeUtc(path).AddSeconds(5));
        Assert.Equal(WeightCacheState.Unverified, new WeightCache(cache).StateOf(entry));

        // Offline, the corruption is named and the bad file removed.
        var e = Assert.Throws<WeightDownloadException>(() => new WeightCache(cache).Get(entry, new PretrainedWeightOptions { CacheDirectory = cache, Offline = true }));
        Assert.Contains("was not the published file", e.Message);
        Assert.Contains(Sha256(corrupted), e.Message);
        Assert.False(File.Exists(path));

        File.WriteAllBytes(path, corrupted);
        Assert.Equal(path, new WeightCache(cache).Get(entry, Options(cache)));
        Assert.Equal(file, File.ReadAllBytes(path));
        Assert.Equal(2, server.Requests.Count);
    }

    [Fact]
    public async Task Two_downloads_of_one_file_at_once_take_turns_and_the_second_uses_the_first_ones_file()
    {
        var file = Content();
        using var server = new LoopbackHttpServer(r => LoopbackHttpServer.Serve(r, file));
        var cache = TestData.NewTempDir("weights-lock");
        var entry = Entry(server.Url("tiny-weights.bin"), file);
        var waiting = new Recorder();

        // Another process holds the lock while it downloads: this download waits for it.
        var held = new FileStream(Path.Combine(cache, "tiny-weights.bin.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        var waiter = Task.Run(() => new WeightCache(cache).GetAsync(entry, Options(cache, waiting)));
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!waiting.Reports.Any(p => p.Stage == WeightDownloadStage.WaitingForLock) && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Contains(waiting.Reports, p => p.Stage == WeightDownloadStage.WaitingForLock);
        Assert.False(waiter.IsCompleted);
        File.WriteAllBytes(Path.Combine(cache, "tiny-weights.bin"), file); // what the holder leaves: the file under its final name
        held.Dispose();

        Assert.Equal(Path.Combine(cache, "tiny-weights.bin"), await waiter);
        Assert.Empty(server.Requests); // it verified the holder's file instead of downloading it again
        Assert.Equal(WeightCacheState.Verified, new WeightCache(cache).StateOf(entry));

        // Two real downloads at once: one request between them.
        var cache2 = TestData.NewTempDir("weights-lock-2");
        var results = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => Task.Run(() => new WeightCache(cache2).GetAsync(entry, Options(cache2)))));
        Assert.All(results, p => Assert.Equal(file, File.ReadAllBytes(p)));
        Assert.Single(server.Requests);
    }

    [Fact]
    public async Task Cancelling_a_download_keeps_what_arrived()
    {
        var file = Content();
        using var server = new LoopbackHttpServer(r => new LoopbackHttpServer.Response(200, file, StallAfter: 80_000), lifetime: TimeSpan.FromSeconds(30));
        var cache = TestData.NewTempDir("weights-cancel");
        var entry = Entry(server.Url("tiny-weights.bin"), file);
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(2)); // long after the 80,000 bytes arrived; the stall timeout is 20 s

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => new WeightCache(cache).GetAsync(entry, Options(cache), cancel.Token));

        Assert.False(File.Exists(Path.Combine(cache, "tiny-weights.bin")));
        Assert.Equal(80_000, new FileInfo(Path.Combine(cache, "tiny-weights.bin.partial")).Length);
    }

    [Fact]
    public void A_stalled_transfer_is_broken_off_and_resumed()
    {
        var file = Content();
        using var server = new LoopbackHttpServer(r => r.Index == 0
            ? new LoopbackHttpServer.Response(200, file, new Dictionary<string, string> { ["ETag"] = "\"v1\"" }, StallAfter: 50_000)
            : LoopbackHttpServer.Serve(r, file), lifetime: TimeSpan.FromSeconds(30));
        var cache = TestData.NewTempDir("weights-stall");
        var entry = Entry(server.Url("tiny-weights.bin"), file);

        var path = new WeightCache(cache).Get(entry, new PretrainedWeightOptions { CacheDirectory = cache, Offline = false, StallTimeout = TimeSpan.FromMilliseconds(700) });

        Assert.Equal(file, File.ReadAllBytes(path));
        Assert.Equal("bytes=50000-", server.Requests[1].Header("Range"));
    }
}
