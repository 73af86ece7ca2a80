using Microsoft.Extensions.Logging;
using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace DistTrain.Coordinator.Cli;

/// Typed System.CommandLine options whose parse and range errors are the one-line messages of
/// the command-line contract ("--epochs: expected a whole number >= 1, got '0'"). Defaults given
/// here are shown by --help; a default that depends on other options is said in the description.
/// A name is written as used: "--data DIR" is the option --data with the placeholder DIR.
public static class Opt
{
    public static Option<int> Int(string name, string help, int fallback, int min = int.MinValue, int max = int.MaxValue) =>
        Make<int>(name, help, fallback, s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= min && v <= max ? v : null,
                  $"a whole number{Range(min, max)}");

    public static Option<int?> OptionalInt(string name, string help, int min, int max) =>
        Make<int?>(name, help, null, s => int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) && v >= min && v <= max ? v : null,
                   $"a whole number{Range(min, max)}");

    public static Option<long?> OptionalLong(string name, string help, long min) =>
        Make<long?>(name, help, null, s => long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) && v >= min ? v : null,
                    $"a whole number{Range(min, long.MaxValue)}");

    public static Option<ulong> ULong(string name, string help, ulong fallback) =>
        Make<ulong>(name, help, fallback, s => ulong.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong v) ? v : null,
                    "a non-negative whole number");

    /// A finite number in [min, max], or (min, max] when minExclusive.
    public static Option<double> Double(string name, string help, double fallback, double min, double max, bool minExclusive = false) =>
        Make<double>(name, help, fallback, s => ParseDouble(s, min, max, minExclusive), DoubleRange(min, max, minExclusive));

    public static Option<double?> OptionalDouble(string name, string help, double min, double max, bool minExclusive = false) =>
        Make<double?>(name, help, null, s => ParseDouble(s, min, max, minExclusive), DoubleRange(min, max, minExclusive));

    public static Option<string> Choice(string name, string help, string fallback, IReadOnlyCollection<string> choices) =>
        Make<string>(name, help, fallback, s => choices.Contains(s) ? s : null, string.Join("|", choices));

    /// A free value (a path, a host name); null when absent.
    public static Option<string?> Text(string name, string help, string? fallback = null)
    {
        var (option, hint) = Split(name);
        var o = new Option<string?>(option) { Description = help, HelpName = hint };
        if (fallback is not null) o.DefaultValueFactory = _ => fallback;
        return o;
    }

    /// --log-format text|json, for train and worker.
    public static Option<string> LogFormat() =>
        Choice("--log-format FORMAT", "text | json: one JSON object a line (time, level, category, message and the entry's figures), for log collectors; errors of usage stay one plain line on stderr", "text", ["text", "json"]);

    /// `output` itself for --log-format text; for json, a writer whose lines become JSON log entries
    /// (Microsoft.Extensions.Logging) written to `output`, and the factory that made it.
    public static (TextWriter Output, Microsoft.Extensions.Logging.ILoggerFactory? Logging) Logs(string format, TextWriter output, string category)
    {
        if (format != "json") return (output, null);
        var factory = Microsoft.Extensions.Logging.LoggerFactory.Create(b => b.AddProvider(new DistTrain.Coordinator.Reporting.JsonLinesLoggerProvider(output)));
        return (new DistTrain.Coordinator.Reporting.LoggingTextWriter(factory.CreateLogger(category)), factory);
    }

    /// --host: an IP address or a name of this machine that can be listened on; else one line.
    public static string LocalHost(string host)
    {
        System.Net.IPAddress address;
        try { address = DistTrain.Protocol.ProtocolConfig.BindAddress(host); }
        catch (Exception e) when (e is System.Net.Sockets.SocketException or ArgumentException or InvalidOperationException)
        {
            throw new UsageException($"--host {host}: not an IP address or a host name that resolves (expected this machine's address or name, e.g. 127.0.0.1)");
        }
        try
        {
            using var probe = new System.Net.Sockets.Socket(address.AddressFamily, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
            probe.Bind(new System.Net.IPEndPoint(address, 0));
        }
        catch (System.Net.Sockets.SocketException e)
        {
            throw new UsageException($"--host {host}: {address} is not an address of this machine ({e.Message}); the others must reach this process at --host");
        }
        return host;
    }

    public static Option<bool> Flag(string name, string help) => new(name) { Description = help, Arity = ArgumentArity.Zero };

    static Option<T> Make<T>(string name, string help, T? fallback, Func<string, object?> parse, string expected)
    {
        var (option, hint) = Split(name);
        var o = new Option<T>(option) { Description = help, HelpName = hint };
        if (fallback is not null) o.DefaultValueFactory = _ => fallback;
        o.CustomParser = r =>
        {
            string s = r.Tokens.Count > 0 ? r.Tokens[0].Value : "";
            if (parse(s) is T v) return v;
            r.AddError($"{option}: expected {expected}, got '{s}'");
            return default!;
        };
        return o;
    }

    static (string Option, string? Hint) Split(string name)
    {
        int space = name.IndexOf(' ');
        return space < 0 ? (name, null) : (name[..space], name[(space + 1)..]);
    }

    static object? ParseDouble(string s, double min, double max, bool minExclusive) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)
        && v >= min && v <= max && !(minExclusive && v == min) ? v : null;

    static string DoubleRange(double min, double max, bool minExclusive) =>
        $"a number {(minExclusive ? ">" : ">=")} {min.ToString(CultureInfo.InvariantCulture)}"
        + (max < double.MaxValue ? $" and <= {max.ToString(CultureInfo.InvariantCulture)}" : "");

    static string Range(long min, long max) =>
        min > long.MinValue && max < long.MaxValue ? $" from {min} to {max}" : min > long.MinValue ? $" >= {min}" : "";
}
