using System.Net;

namespace MLNet.ImageTransfer.Weights;

/// <summary>
/// Catalog weights could not be obtained: offline, a DNS or connection failure, an HTTP error, a transfer that kept
/// breaking. The message names the URL, the HTTP status if there was one, and the exact path where the file can be put
/// by hand (<see cref="ManualPath"/>), so that a machine without network access can still use the name.
/// </summary>
public class WeightDownloadException : IOException
{
    public WeightDownloadException(string message, string entryName, string? url, string manualPath, HttpStatusCode? statusCode = null, Exception? inner = null)
        : base(message, inner)
    {
        EntryName = entryName;
        Url = url;
        ManualPath = manualPath;
        StatusCode = statusCode;
    }

    /// <summary>The catalog entry.</summary>
    public string EntryName { get; }
    /// <summary>Where the file is downloaded from.</summary>
    public string? Url { get; }
    /// <summary>Where a copy of the file, obtained some other way, is picked up (and verified) instead of downloading.</summary>
    public string ManualPath { get; }
    /// <summary>The server's status code, when it answered with an error.</summary>
    public HttpStatusCode? StatusCode { get; }
}

/// <summary>
/// A downloaded (or cached) file is not the published one: its hash differs from the catalog's. The file was deleted;
/// the message names the expected and the actual hash and the URL.
/// </summary>
public sealed class WeightHashMismatchException : WeightDownloadException
{
    public WeightHashMismatchException(string message, string entryName, string? url, string manualPath, string expected, string actual)
        : base(message, entryName, url, manualPath)
    {
        Expected = expected;
        Actual = actual;
    }

    /// <summary>The hash the publisher gives (e.g. <c>sha256 11ad3fa6…</c>, <c>md5 2cb9…</c>).</summary>
    public string Expected { get; }
    /// <summary>The file's hash of the same kind.</summary>
    public string Actual { get; }
}
