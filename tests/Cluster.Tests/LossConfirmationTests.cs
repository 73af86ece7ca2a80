using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using DistTrain.Coordinator.Cluster;

namespace DistTrain.Cluster.Tests;

/// The confirmation behind fast loss detection: a worker is taken for gone only when nothing
/// listens at its address any more. Anything alive, however busy or frozen, must not be.
public sealed class LossConfirmationTests
{
    static readonly TimeSpan Timeout = LossConfirmation.ProbeTimeout;

    [Fact]
    public async Task A_port_nobody_listens_on_any_more_is_gone()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();   // what a killed process leaves behind
        Assert.True(await LossConfirmation.NothingListensAt("127.0.0.1", port, Timeout));
    }

    [Fact]
    public async Task A_listener_that_never_accepts_is_alive()
    {
        // A busy worker's process, or one stopped with SIGSTOP: the kernel still completes the
        // connection on its listening socket although the process reads nothing.
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try { Assert.False(await LossConfirmation.NothingListensAt("127.0.0.1", ((IPEndPoint)listener.LocalEndpoint).Port, Timeout)); }
        finally { listener.Stop(); }
    }

    [Fact]
    public async Task A_frozen_process_is_not_gone()
    {
        // A real process frozen with SIGSTOP while listening: never confirmed as gone.
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var psi = new ProcessStartInfo("python3", ["-c", $"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(4); print('up', flush=True); time.sleep(60)"])
        { RedirectStandardOutput = true };
        using var p = Process.Start(psi)!;
        try
        {
            Assert.Equal("up", await p.StandardOutput.ReadLineAsync());
            Process.Start("kill", ["-STOP", p.Id.ToString()])!.WaitForExit();
            Assert.False(await LossConfirmation.NothingListensAt("127.0.0.1", port, Timeout));
            p.Kill();
            p.WaitForExit();
            Assert.True(await LossConfirmation.NothingListensAt("127.0.0.1", port, Timeout));   // and once it is killed, it is
        }
        finally { if (!p.HasExited) p.Kill(); }
    }

    [Fact]
    public async Task An_address_that_answers_nothing_is_not_gone()
    {
        // A cut cable or dropped packets: no refusal comes back, so the heartbeat detector decides.
        // Made here with a listener whose accept queue is full: Linux then drops new connection
        // requests without a word (tcp_abort_on_overflow is 0), and the probe times out.
        using var listener = new Socket(SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        int port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        var fillers = new List<Socket>();
        try
        {
            bool full = false;
            for (int i = 0; i < 8 && !full; i++)
            {
                var s = new Socket(SocketType.Stream, ProtocolType.Tcp);
                fillers.Add(s);
                try { await s.ConnectAsync(IPAddress.Loopback, port).WaitAsync(TimeSpan.FromMilliseconds(300)); }
                catch (TimeoutException) { full = true; }   // the queue is full: requests go unanswered
            }
            Assert.True(full, "the accept queue never filled, so this would not test an unanswered probe");
            Assert.False(await LossConfirmation.NothingListensAt("127.0.0.1", port, TimeSpan.FromMilliseconds(300)));
        }
        finally { foreach (var s in fillers) s.Dispose(); }
    }
}
