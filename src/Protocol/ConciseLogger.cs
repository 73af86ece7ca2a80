using Akka.Actor;
using Akka.Dispatch;
using Akka.Event;

namespace DistTrain.Protocol;

/// Akka's log events as one line each, without stack traces, written to Sink (stdout unless the
/// host routes them elsewhere, as the live progress display does). A connection that closes is
/// not logged: peers leave at the end of every job, and a peer lost mid-run is reported by the
/// coordinator itself ("lost worker ..."). A line repeated within a minute (Akka retries an
/// unreachable peer every few seconds) is written once.
public sealed class ConciseLogger : ReceiveActor, IRequiresMessageQueue<ILoggerMessageQueueSemantics>
{
    /// Where the lines go; replaced by hosts that own the console.
    public static volatile Action<string> Sink = line => Console.Out.WriteLine(line);

    readonly RepeatFilter _repeats = new(TimeSpan.FromMinutes(1));

    public ConciseLogger()
    {
        Receive<InitializeLogger>(_ => Sender.Tell(new LoggerInitialized()));
        Receive<LogEvent>(e =>
        {
            if (Format(e) is string line && _repeats.ShouldWrite(line, DateTime.UtcNow)) Sink(line);
        });
    }

    /// The line for an event, or null when it is only the noise of a closing connection.
    public static string? Format(LogEvent e)
    {
        string message = e.Message?.ToString() ?? "";
        Exception? cause = (e as Error)?.Cause;
        if (IsConnectionClosing(message, cause)) return null;
        string level = e.LogLevel() switch { LogLevel.ErrorLevel => "error", LogLevel.WarningLevel => "warning", LogLevel.InfoLevel => "info", _ => "debug" };
        string text = FirstLine(message);
        if (cause is not null && !text.Contains(cause.Message, StringComparison.Ordinal)) text += $" ({cause.GetType().Name}: {FirstLine(cause.Message)})";
        return $"akka {level}: {text}";
    }

    static bool IsConnectionClosing(string message, Exception? cause) =>
        cause?.GetType().Name is "EndpointDisassociatedException" or "ShutDownAssociation"
        || (message.Contains("address is now gated", StringComparison.OrdinalIgnoreCase) && message.Contains("Disassociated", StringComparison.Ordinal))
        || message.StartsWith("Disassociated", StringComparison.Ordinal);

    static string FirstLine(string s)
    {
        int end = s.IndexOfAny(['\r', '\n']);
        return (end < 0 ? s : s[..end]).Trim();
    }
}

/// Lets a line through unless the same line went through less than `quiet` ago.
public sealed class RepeatFilter(TimeSpan quiet)
{
    readonly Dictionary<string, DateTime> _written = new(StringComparer.Ordinal);

    public bool ShouldWrite(string line, DateTime now)
    {
        if (_written.TryGetValue(line, out var last) && now - last < quiet) return false;
        if (_written.Count > 1000) _written.Clear();   // bounded: a run with ever-new lines cannot grow it
        _written[line] = now;
        return true;
    }
}
