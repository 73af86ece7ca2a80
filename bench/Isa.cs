using System.Diagnostics;
using System.Runtime.Intrinsics;

namespace DistTrain.Bench;

/// Which vector ISA the JIT uses, and running the bench again with a narrower one.
static class Isa
{
    /// The widest vectors the JIT compiles for: avx512, avx2 or 128-bit.
    public static string Current => Vector512.IsHardwareAccelerated ? "avx512" : Vector256.IsHardwareAccelerated ? "avx2" : "128-bit";

    /// The runtime switch that narrows the ISA to `isa` (.NET 10 ignores the older EnableAVX512F).
    public static string? SwitchVariable(string isa) => isa switch
    {
        "avx2" => "DOTNET_EnableAVX512",
        "128" => "DOTNET_EnableAVX2",
        _ => null,
    };

    /// The switch this process runs under, if any ("DOTNET_EnableAVX512=0").
    public static string? ActiveSwitch() =>
        new[] { "DOTNET_EnableAVX512", "DOTNET_EnableAVX2" }.FirstOrDefault(v => Environment.GetEnvironmentVariable(v) == "0") is { } v ? $"{v}=0" : null;

    static string Expected(string isa) => isa == "avx2" ? "avx2" : "128-bit";

    /// Null to go on in this process; otherwise the exit code of the bench run again under the
    /// switch for `isa` (2 when this CPU cannot run that ISA).
    public static int? Forced(string isa)
    {
        if (SwitchVariable(isa) is not { } variable) return null;
        if (Environment.GetEnvironmentVariable(variable) == "0")
        {
            if (Current == Expected(isa)) return null;
            Console.Error.WriteLine($"disttrain-bench: --isa {isa}: this CPU runs {Current} vectors with {variable}=0, not {Expected(isa)}");
            return 2;
        }
        var psi = new ProcessStartInfo(Environment.ProcessPath ?? "dotnet") { UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(psi.FileName) == "dotnet") psi.ArgumentList.Add(typeof(Isa).Assembly.Location);
        foreach (var a in Environment.GetCommandLineArgs().Skip(1)) psi.ArgumentList.Add(a);
        psi.Environment[variable] = "0";
        using var child = Process.Start(psi) ?? throw new InvalidOperationException("could not start the bench again");
        child.WaitForExit();
        return child.ExitCode;
    }

    /// The CPU's model name from /proc/cpuinfo (Linux), or "unknown".
    public static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name"));
            return line is null ? "unknown" : line[(line.IndexOf(':') + 1)..].Trim();
        }
        catch (IOException) { return "unknown"; }
        catch (UnauthorizedAccessException) { return "unknown"; }
    }
}
