using System.Net.Sockets;

namespace DistTrain.Coordinator.Cluster;

/// Confirms that a worker whose connection closed (Akka's disassociation, a data-plane reset or
/// EOF) is really gone before the coordinator gives its work away: its process no longer listens
/// on its Akka.Remote port, so a fresh connection is refused at once. That is what a kill -9, a
/// crash or an exit looks like on this machine or across a LAN. A busy, frozen (SIGSTOP) or cut-off
/// process still has its listening socket (or answers nothing at all), so it is never "gone" here:
/// those are left to the cluster's heartbeat failure detector, which is slower but sure.
public static class LossConfirmation
{
    /// How long a probe may take: a refusal comes back in a round trip; anything slower is not one.
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(1);

    /// True only when a connection to host:port is refused.
    public static async Task<bool> NothingListensAt(string host, int port, TimeSpan timeout)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp);
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await socket.ConnectAsync(host, port, cancel.Token);
            return false;   // something accepted: alive, maybe busy; close without a word
        }
        catch (SocketException e) when (e.SocketErrorCode == SocketError.ConnectionRefused) { return true; }
        catch (Exception e) when (e is SocketException or OperationCanceledException) { return false; }
    }
}
