namespace DistTrain.Coordinator.Reporting;

/// The dashboard's page and script, embedded in the assembly (Reporting/Dashboard/): served by the
/// coordinator itself, no internet, no libraries.
static class Dashboard
{
    public static readonly string Html = Read("index.html");
    public static readonly string Script = Read("dashboard.js");

    static string Read(string name)
    {
        using var stream = typeof(Dashboard).Assembly.GetManifestResourceStream($"DistTrain.Dashboard.{name}")
                           ?? throw new InvalidOperationException($"the dashboard's {name} is not embedded in {typeof(Dashboard).Assembly.GetName().Name}");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
