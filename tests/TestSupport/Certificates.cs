using System.Diagnostics;

namespace DistTrain.TestSupport;

/// Certificates for TLS tests, made the way users make them: with deploy/make-certs.sh.
public static class Certificates
{
    /// A CA and one .pfx per node in `dir` (empty password); returns `dir`.
    public static string Make(string dir, params string[] nodes)
    {
        var psi = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(Path.Combine(Repository.Root, "deploy", "make-certs.sh"));
        foreach (var a in new[] { "--out", dir }.Concat(nodes)) psi.ArgumentList.Add(a);
        psi.Environment["DISTTRAIN_TLS_PASSWORD"] = "";
        var (exit, output) = Processes.RunToExit(psi, Patience.Helper);
        if (exit != 0) throw new InvalidOperationException("make-certs.sh failed: " + output);
        return dir;
    }
}
