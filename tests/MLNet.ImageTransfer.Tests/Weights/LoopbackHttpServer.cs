using System.Net;
using System.Net.Sockets;
using System.Text;

namespace MLNet.ImageTransfer.Tests.Weights;

/// <summary>
/// A minimal HTTP/1.1 server on 127.0.0.1 (a free port) for download tests: it answers each request with what the
/// test's handler returns — including answers a real server gives when things go wrong (a body cut short, a range
/// ignored, an error status) — and records the requests. It serves at most <c>maxRequests</c> connections, one request
/// each (<c>Connection: close</c>), and stops by itself after <c>lifetime</c> or when disposed.
/// </summary>
internal sealed class LoopbackHttpServer : IDisposable
{
    public sealed record Request(int Index, string Method, string Path, IReadOnlyDictionary<string, string> Headers)
    {
        public string? Header(string name) => Headers.TryGetValue(name, out var v) ? v : null;
    }

    /// <param name="Status">HTTP status code.</param>
    /// <param name="Body">The bytes to send (all of them unless <paramref name="CutAfter"/>).</param>
    /// <param name="Headers">Extra headers (Content-Length is always the whole body's length).</param>
    /// <param name="CutAfter">Close the connection after this many body bytes (a transfer that breaks).</param>
    /// <param name="StallAfter">Send this many body bytes, then nothing until the server stops (a stalled transfer).</param>
    public sealed record Response(int Status, byte[] Body, IReadOnlyDictionary<string, string>? Headers = null, int? CutAfter = null, int? StallAfter = null);

    readonly TcpListener _listener;
    readonly Func<Request, Response> _handler;
    readonly int _maxRequests;
    readonly CancellationTokenSource _stop;
    readonly List<Request> _requests = [];
    readonly List<Task> _connections = [];
    readonly Task _loop;

    public LoopbackHttpServer(Func<Request, Response> handler, int maxRequests = 8, TimeSpan? lifetime = null)
    {
        _handler = handler;
        _maxRequests = maxRequests;
        _stop = new CancellationTokenSource(lifetime ?? TimeSpan.FromSeconds(60));
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _loop = Task.Run(AcceptLoop);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public string Url(string path) => $"http://127.0.0.1:{Port}/{path.TrimStart('/')}";

    public IReadOnlyList<Request> Requests
    {
        get { lock (_requests) return _requests.ToList(); }
    }

    /// <summary>A handler serving one file the way a real server does: 206 for <c>Range: bytes=N-</c> when the If-Range validator (if any) matches the ETag, else 200.</summary>
    public static Response Serve(Request request, byte[] file, string etag = "\"v1\"", bool honourRange = true, int? cutAfter = null)
    {
        var headers = new Dictionary<string, string> { ["ETag"] = etag, ["Accept-Ranges"] = honourRange ? "bytes" : "none" };
        if (honourRange && request.Header("Range") is { } range && range.StartsWith("bytes=") && range.EndsWith('-')
            && (request.Header("If-Range") is not { } ifRange || ifRange == etag)
            && long.TryParse(range["bytes=".Length..^1], out var from) && from < file.Length)
        {
            headers["Content-Range"] = $"bytes {from}-{file.Length - 1}/{file.Length}";
            return new Response(206, file[(int)from..], headers, cutAfter);
        }
        return new Response(200, file, headers, cutAfter);
    }

    async Task AcceptLoop()
    {
        try
        {
            for (int i = 0; i < _maxRequests; i++)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                int index = i;
                lock (_connections) _connections.Add(Task.Run(() => Handle(client, index)));
            }
        }
        catch (OperationCanceledException) { }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
        finally
        {
            _listener.Stop();
        }
    }

    async Task Handle(TcpClient client, int index)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var head = await ReadHead(stream, _stop.Token);
                if (head is null) return;
                var lines = head.Split("\r\n");
                var parts = lines[0].Split(' ');
                var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
                foreach (var line in lines.Skip(1).Where(l => l.Contains(':')))
                    headers[line[..line.IndexOf(':')].Trim()] = line[(line.IndexOf(':') + 1)..].Trim();
                var request = new Request(index, parts[0], parts.Length > 1 ? parts[1] : "/", headers);
                lock (_requests) _requests.Add(request);

                var response = _handler(request);
                var text = new StringBuilder();
                text.Append($"HTTP/1.1 {response.Status} {Reason(response.Status)}\r\n");
                text.Append($"Content-Length: {response.Body.Length}\r\nConnection: close\r\n");
                foreach (var (k, v) in response.Headers ?? new Dictionary<string, string>()) text.Append($"{k}: {v}\r\n");
                text.Append("\r\n");
                await stream.WriteAsync(Encoding.ASCII.GetBytes(text.ToString()), _stop.Token);
                int send = Math.Min(response.Body.Length, response.CutAfter ?? response.StallAfter ?? response.Body.Length);
                await stream.WriteAsync(response.Body.AsMemory(0, send), _stop.Token);
                await stream.FlushAsync(_stop.Token);
                if (response.StallAfter is not null) await Task.Delay(Timeout.Infinite, _stop.Token);
                client.Client.Shutdown(SocketShutdown.Send);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
                // The client went away, or the server stopped: nothing to answer.
            }
        }
    }

    static async Task<string?> ReadHead(NetworkStream stream, CancellationToken ct)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (bytes.Count < 16384)
        {
            if (await stream.ReadAsync(one, ct) == 0) return null;
            bytes.Add(one[0]);
            if (bytes.Count >= 4 && bytes[^4] == '\r' && bytes[^3] == '\n' && bytes[^2] == '\r' && bytes[^1] == '\n')
                return Encoding.ASCII.GetString(bytes.ToArray(), 0, bytes.Count - 4);
        }
        return null;
    }

    static string Reason(int status) => status switch
    {
        200 => "OK", 206 => "Partial Content", 404 => "Not Found", 416 => "Range Not Satisfiable", 500 => "Internal Server Error",
        _ => "Status",
    };

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        Task[] pending;
        lock (_connections) pending = [.. _connections];
        try { Task.WaitAll([_loop, .. pending], TimeSpan.FromSeconds(5)); }
        catch (AggregateException) { }
        _stop.Dispose();
    }
}
