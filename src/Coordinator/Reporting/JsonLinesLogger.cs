using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace DistTrain.Coordinator.Reporting;

/// --log-format json: Microsoft.Extensions.Logging entries as JSON lines for log collectors, one
/// object a line: {"time": ISO 8601 UTC, "level", "category", "message", then the entry's
/// structured values by name ("step": 120, "loss": 0.0431, ...), and "exception" when there is one}.
public sealed class JsonLinesLoggerProvider(TextWriter output) : ILoggerProvider
{
    readonly object _lock = new();
    static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose() { }

    void Write<TState>(string category, LogLevel level, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, Options))
        {
            w.WriteStartObject();
            w.WriteString("time", DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ss.fffZ", System.Globalization.CultureInfo.InvariantCulture));
            w.WriteString("level", level.ToString().ToLowerInvariant());
            w.WriteString("category", category);
            w.WriteString("message", formatter(state, exception));
            if (state is IReadOnlyList<KeyValuePair<string, object?>> values)
                foreach (var (key, value) in values)
                {
                    if (key == "{OriginalFormat}" || key is "time" or "level" or "category" or "message") continue;
                    w.WritePropertyName(key);
                    switch (value)
                    {
                        case null: w.WriteNullValue(); break;
                        case double d when !double.IsFinite(d): w.WriteNullValue(); break;
                        case double d: w.WriteNumberValue(d); break;
                        case float f when !float.IsFinite(f): w.WriteNullValue(); break;
                        case float f: w.WriteNumberValue(f); break;
                        case int i: w.WriteNumberValue(i); break;
                        case long l: w.WriteNumberValue(l); break;
                        case bool b: w.WriteBooleanValue(b); break;
                        default: w.WriteStringValue(value.ToString()); break;
                    }
                }
            if (exception is not null) w.WriteString("exception", $"{exception.GetType().Name}: {exception.Message}");
            w.WriteEndObject();
        }
        string line = Encoding.UTF8.GetString(buffer.ToArray());
        lock (_lock)
        {
            output.WriteLine(line);
            output.Flush();
        }
    }

    sealed class Logger(JsonLinesLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel)) provider.Write(category, logLevel, state, exception, formatter);
        }
    }
}

/// The lines a command writes (TextWriter.WriteLine), as log entries of `logger`: "warning: ..."
/// lines at Warning, "error: ..." at Error, the rest at Information. A line is logged when its
/// end is written.
public sealed class LoggingTextWriter(ILogger logger) : TextWriter
{
    readonly StringBuilder _line = new();
    readonly object _lock = new();

    public override Encoding Encoding => Encoding.UTF8;

    public override void Write(char value)
    {
        lock (_lock)
        {
            if (value == '\n') EndLine();
            else if (value != '\r') _line.Append(value);
        }
    }

    public override void Write(string? value)
    {
        if (value is null) return;
        lock (_lock) foreach (char c in value) Write(c);
    }

    public override void WriteLine(string? value)
    {
        lock (_lock)
        {
            Write(value);
            EndLine();
        }
    }

    void EndLine()
    {
        string line = _line.ToString();
        _line.Clear();
        var level = line.StartsWith("error", StringComparison.Ordinal) ? LogLevel.Error
            : line.StartsWith("warning", StringComparison.Ordinal) || line.Contains("akka warning", StringComparison.Ordinal) ? LogLevel.Warning
            : LogLevel.Information;
        logger.Log(level, default, line, null, (s, _) => s);
    }
}
