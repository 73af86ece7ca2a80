using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace DistTrain.Cnn.Kernels;

/// The few vector operations a register-tiled kernel needs, for one vector width, so that a tile
/// is written once and compiled per width (the JIT specialises a generic method for each struct).
/// Every width computes each lane with the same IEEE operation, so the bits never depend on it.
internal unsafe interface IVectorOps<TVec> where TVec : struct
{
    /// Lanes of TVec.
    static abstract int Count { get; }
    /// Vector registers the JIT can allocate (32 with AVX-512, 16 otherwise): what bounds a tile.
    static abstract int Registers { get; }
    static abstract TVec Load(float* p);
    static abstract void Store(TVec v, float* p);
    static abstract TVec Broadcast(float x);
    /// a * b + c, rounded once.
    static abstract TVec Fma(TVec a, TVec b, TVec c);
}

internal unsafe struct V512 : IVectorOps<Vector512<float>>
{
    public static int Count => 16;
    public static int Registers => 32;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Load(float* p) => Vector512.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector512<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Broadcast(float x) => Vector512.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector512<float> Fma(Vector512<float> a, Vector512<float> b, Vector512<float> c) => Vector512.FusedMultiplyAdd(a, b, c);
}

internal unsafe struct V256 : IVectorOps<Vector256<float>>
{
    public static int Count => 8;
    public static int Registers => 16;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Load(float* p) => Vector256.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector256<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Broadcast(float x) => Vector256.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector256<float> Fma(Vector256<float> a, Vector256<float> b, Vector256<float> c) => Vector256.FusedMultiplyAdd(a, b, c);
}

internal unsafe struct V128 : IVectorOps<Vector128<float>>
{
    public static int Count => 4;
    public static int Registers => 16;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Load(float* p) => Vector128.Load(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static void Store(Vector128<float> v, float* p) => v.Store(p);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Broadcast(float x) => Vector128.Create(x);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Vector128<float> Fma(Vector128<float> a, Vector128<float> b, Vector128<float> c) => Vector128.FusedMultiplyAdd(a, b, c);
}
