using System.Globalization;

namespace DistTrain.Coordinator.Cli;

/// "--name value" and "--flag" arguments of one command. Every option must be known to the
/// command and used once; values are checked where they are read, with one-line errors.
public sealed class Arguments
{
    readonly Dictionary<string, string?> _values = new(StringComparer.Ordinal);
    readonly HashSet<string> _read = new(StringComparer.Ordinal);

    public Arguments(IReadOnlyList<string> args, IReadOnlySet<string> valueOptions, IReadOnlySet<string> flags)
    {
        for (int i = 0; i < args.Count; i++)
        {
            string a = args[i];
            string name = a, value;
            int eq = a.IndexOf('=');
            if (a.StartsWith("--", StringComparison.Ordinal) && eq > 0) { name = a[..eq]; }
            if (flags.Contains(name))
            {
                if (eq > 0) throw new UsageException($"{name} takes no value");
                Add(name, null);
                continue;
            }
            if (!valueOptions.Contains(name))
                throw new UsageException(a.StartsWith('-') ? $"unknown option {name}" : $"unexpected argument '{a}'");
            if (eq > 0) value = a[(eq + 1)..];
            else if (i + 1 < args.Count) value = args[++i];
            else throw new UsageException($"{name} needs a value");
            Add(name, value);
        }
    }

    void Add(string name, string? value)
    {
        if (!_values.TryAdd(name, value)) throw new UsageException($"{name} given more than once");
    }

    public bool Has(string name) => _values.ContainsKey(name);
    public bool Flag(string name) => _values.ContainsKey(name);

    public string? String(string name) => _values.TryGetValue(name, out var v) ? v : null;
    public string String(string name, string fallback) => String(name) ?? fallback;

    public int Int(string name, int fallback, int min = int.MinValue, int max = int.MaxValue)
    {
        if (String(name) is not string s) return fallback;
        if (!int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out int v) || v < min || v > max)
            throw new UsageException($"{name}: expected a whole number{Range(min, max)}, got '{s}'");
        return v;
    }

    public long? Long(string name, long min = long.MinValue)
    {
        if (String(name) is not string s) return null;
        if (!long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out long v) || v < min)
            throw new UsageException($"{name}: expected a whole number{Range(min, long.MaxValue)}, got '{s}'");
        return v;
    }

    public ulong ULong(string name, ulong fallback)
    {
        if (String(name) is not string s) return fallback;
        if (!ulong.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out ulong v))
            throw new UsageException($"{name}: expected a non-negative whole number, got '{s}'");
        return v;
    }

    public double Double(string name, double fallback, double min, double max, bool minExclusive = false)
    {
        if (String(name) is not string s) return fallback;
        if (!double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !double.IsFinite(v)
            || v < min || v > max || (minExclusive && v == min))
            throw new UsageException($"{name}: expected a number {(minExclusive ? ">" : ">=")} {min.ToString(CultureInfo.InvariantCulture)}"
                                     + (max < double.MaxValue ? $" and <= {max.ToString(CultureInfo.InvariantCulture)}" : "") + $", got '{s}'");
        return v;
    }

    public string Choice(string name, string fallback, IReadOnlyCollection<string> choices)
    {
        var v = String(name, fallback);
        if (!choices.Contains(v)) throw new UsageException($"{name}: expected {string.Join("|", choices)}, got '{v}'");
        return v;
    }

    static string Range(long min, long max) =>
        min > long.MinValue && max < long.MaxValue ? $" from {min} to {max}" : min > long.MinValue ? $" >= {min}" : "";
}
