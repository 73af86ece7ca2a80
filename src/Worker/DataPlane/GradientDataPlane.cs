using DistTrain.Protocol;

namespace DistTrain.Worker.DataPlane;

/// A worker's gradient data plane: ring neighbours send their chunks to each other over TCP (inside
/// TLS sessions in a TLS job) instead of Akka.Remote, which spends most of its CPU copying and wrapping each payload (see the
/// README's Benchmarks). Akka keeps control, membership and failure detection; a chunk still goes
/// through the worker actor, which validates it exactly as before (generation, step, round,
/// segment, sender). A connection serves one generation from one ring predecessor: it opens with
/// the <see cref="Handshake"/>, then carries frames (<see cref="FrameCodec"/>).
public sealed class GradientDataPlane : IDisposable
{
    readonly Handshake _handshake;
    readonly ChunkBuffers _buffers;
    readonly Action<string> _log;
    readonly Listener _listener;
    readonly Tls? _tls;

    public int Port => _listener.Port;

    /// Listens on host:port (0: any free port). `deliver(senderPath, lease)` is called on a
    /// connection's reader thread for every chunk, in the order it was sent; the receiver disposes
    /// the lease once done with it. `buffers`: the pool of chunk buffers (tests count their own).
    /// `tls`: every connection, both ways, is a TLS session under the job's CA (DataPlaneTls).
    public GradientDataPlane(string host, int port, string jobToken, Action<string, ChunkLease> deliver, Action<string> log,
                             ChunkBuffers? buffers = null, Tls? tls = null)
    {
        _tls = tls;
        _handshake = new Handshake(jobToken);
        _buffers = buffers ?? ChunkBuffers.Shared;
        _log = log;
        _listener = new Listener(host, port, _handshake, _buffers, deliver, log, tls);
    }

    /// A link to `endpoint` ("host:port") for one generation, sending as `selfPath` (this worker's
    /// path as the ring names it). With `fallback`, chunks go over Akka.Remote when the successor
    /// cannot be reached within `patience` or the connection breaks.
    public Link Connect(string endpoint, string selfPath, Action<GradientChunk>? fallback = null, TimeSpan? patience = null) =>
        new(endpoint, selfPath, _handshake, _buffers, _log, fallback, patience ?? ProtocolConfig.DataPlaneConnectPatience, _tls);

    public void Dispose() => _listener.Dispose();
}
