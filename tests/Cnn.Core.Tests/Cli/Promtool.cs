using System.Diagnostics;

namespace DistTrain.Cnn.Tests.Cli;

/// `promtool check metrics` (Debian's prometheus package; tests/run.sh installs it) on a scrape.
static class Promtool
{
    public static void Check(string scrape)
    {
        Assert.False(string.IsNullOrWhiteSpace(scrape), "empty scrape: promtool would accept it");
        var psi = new ProcessStartInfo("promtool") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("check");
        psi.ArgumentList.Add("metrics");
        Process p;
        try { p = Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception e) { Assert.Fail($"promtool cannot run ({e.Message}); tests/run.sh installs it (apt-get install prometheus)"); return; }
        using (p)
        {
            p.StandardInput.Write(scrape);
            p.StandardInput.Close();
            string output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            Assert.True(p.ExitCode == 0, $"promtool check metrics: exit {p.ExitCode}: {output}");
        }
    }
}
