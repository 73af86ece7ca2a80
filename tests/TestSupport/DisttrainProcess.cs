using System.Diagnostics;

namespace DistTrain.TestSupport;

/// The `disttrain` executable as a separate process, as a user starts it.
public static class DisttrainProcess
{
    /// `dotnet disttrain.dll ARGS` (the binary beside the test assembly), with its output redirected.
    public static ProcessStartInfo StartInfo(IEnumerable<string> args)
    {
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "disttrain.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        return psi;
    }
}

public static class Processes
{
    /// Runs `psi` to its end: its exit code and its stdout and stderr. One that is still running
    /// after `timeout` is killed and reported as a TimeoutException.
    public static (int Exit, string Output) RunToExit(ProcessStartInfo psi, TimeSpan timeout)
    {
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"{string.Join(' ', psi.ArgumentList)} did not exit within {timeout}");
        }
        return (p.ExitCode, stdout.Result + stderr.Result);
    }
}
