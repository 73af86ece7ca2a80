using System.Buffers;
using DistTrain.Protocol;

namespace DistTrain.Worker.DataPlane;

/// The pool of the data plane's chunk buffers. Without it a step would allocate the gradient's size
/// twice in large-object arrays, and the GC would compete with training for the cores. A buffer
/// leaves the pool only inside a <see cref="ChunkLease"/>, its one owner; the counts let a test
/// see that every buffer came back.
public sealed class ChunkBuffers
{
    public static readonly ChunkBuffers Shared = new();

    /// Buffers up to a part's size: a longer rent would be a fresh array each time, so parts are cut
    /// small enough that even their worst-case encoding fits (GradientCodec.ValuesPerPart).
    readonly ArrayPool<byte> _pool = ArrayPool<byte>.Create(ProtocolConfig.PartBytes, ProtocolConfig.DataPlanePooledBuffers);
    long _rented, _returned;

    public long Rented => Interlocked.Read(ref _rented);
    public long Returned => Interlocked.Read(ref _returned);

    internal byte[] Rent(int length)
    {
        Interlocked.Increment(ref _rented);
        return _pool.Rent(length);
    }

    internal void Return(byte[] buffer)
    {
        Interlocked.Increment(ref _returned);
        _pool.Return(buffer);
    }
}
