using Akka.Configuration;

namespace DistTrain.Protocol;

/// A listening port that cannot be taken; the message is one line naming the option and the port.
public sealed class PortUnavailableException(string message) : Exception(message);

/// The HOCON both roles share: cluster provider, the MessagePack serializer bound to every
/// protocol message, the remoting frame size the chunking is sized against.
public static class ProtocolConfig
{
    public const string SystemName = "disttrain";
    public const string CoordinatorName = "coordinator";

    /// Remoting refuses frames above this; protocol payloads are cut well below it.
    public const int MaximumFrameBytes = 4 << 20;
    /// The largest byte[] a single protocol message carries (shipped samples).
    public const int MaxPayloadBytes = 1 << 20;
    /// Gradient and model-state transfers are cut into parts of at most this many bytes. Measured
    /// (bench, ring of 2 processes, 4 MiB): parts of 1 MiB 63 MB/s, 256 KiB 111 MB/s, 128 KiB 103 MB/s.
    public const int PartBytes = 1 << 18;

    // ---- Coordinator and worker
    /// How long the coordinator waits for workers: for the job's workers at the start, and for a
    /// replacement when none is left (--worker-wait).
    public static readonly TimeSpan WorkerWait = TimeSpan.FromSeconds(60);
    /// A cluster member with no admitted worker after this long is downed (a stranger).
    public static readonly TimeSpan AdmissionGrace = TimeSpan.FromSeconds(20);
    /// A refused worker exits; one still in the cluster after this long is downed.
    public static readonly TimeSpan RefusedMemberGrace = TimeSpan.FromSeconds(5);
    /// A worker gives up when the coordinator has not answered within this long (--join-timeout).
    public static readonly TimeSpan JoinTimeout = TimeSpan.FromSeconds(60);
    /// A worker repeats its registration this often until the coordinator answers.
    public static readonly TimeSpan RegisterRetry = TimeSpan.FromSeconds(1);
    /// How long worker processes of the local cluster get to exit on their own after JobFinished.
    public static readonly TimeSpan WorkerProcessExit = TimeSpan.FromSeconds(10);
    /// Leaving the cluster and stopping remoting is given up after this long (ShutDownWithin).
    public static readonly TimeSpan ShutdownLimit = TimeSpan.FromSeconds(15);
    /// After SIGTERM or SIGINT, how long the step (or evaluation, or state fetch) in flight may take
    /// before the run stops without it (--stop-grace).
    public static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(30);

    public const string Serialization =
        """
        akka.actor {
          serializers { disttrain = "DistTrain.Protocol.ProtocolSerializer, DistTrain.Protocol" }
          serialization-bindings { "DistTrain.Protocol.IProtocolMessage, DistTrain.Protocol" = disttrain }
        }
        """;

    /// A cluster node. No seed nodes: the coordinator joins itself, and a worker joins the
    /// coordinator's address only once its job token has been accepted.
    public static Config Cluster(string role, string host, int port) =>
        ConfigurationFactory.ParseString(
            $$"""
            akka {
              loglevel = WARNING
              stdout-loglevel = WARNING
              loggers = ["DistTrain.Protocol.ConciseLogger, DistTrain.Protocol"]
              log-dead-letters = off
              log-dead-letters-during-shutdown = off
              actor.provider = cluster
              remote {
                log-remote-lifecycle-events = off
                dot-netty.tcp {
                  hostname = "{{host}}"
                  port = {{port}}
                  maximum-frame-size = {{MaximumFrameBytes}}b
                  send-buffer-size = {{2 * MaximumFrameBytes}}b
                  receive-buffer-size = {{2 * MaximumFrameBytes}}b
                  # The ring passes one message at a time from peer to peer; write batching would hold
                  # each one for the 40 ms flush timer (measured: 143 ms/step -> see README).
                  batching.enabled = false
                  # DotNetty's default write-buffer high-water mark (64 KiB) marks the channel unwritable
                  # after every 1 MiB gradient chunk, and Akka.Remote then backs off for backoff-interval.
                  write-buffer-high-water-mark = {{4 * MaximumFrameBytes}}b
                  write-buffer-low-water-mark = {{2 * MaximumFrameBytes}}b
                }
                backoff-interval = 2 ms
              }
              cluster {
                roles = ["{{role}}"]
                log-info = off
                failure-detector {
                  heartbeat-interval = 1s
                  # 3 s noticed a kill -9 after 9.6 s instead of 12.6 s, but on 2 busy cores delayed
                  # heartbeats then downed healthy workers in a chain (deploy/chaos.sh failed); 5 s did not.
                  acceptable-heartbeat-pause = 5s
                  threshold = 12.0
                }
                downing-provider-class = "Akka.Cluster.SBR.SplitBrainResolverProvider, Akka.Cluster"
                split-brain-resolver {
                  active-strategy = keep-oldest
                  stable-after = 3s
                  keep-oldest.down-if-alone = off
                  # With the default (on), reachability that flapped under load (kill -9 and replacement
                  # workers starting on 2 busy cores, deploy/chaos.sh) made SBR down every node,
                  # the coordinator included. Keep-oldest alone never downs the coordinator's side.
                  down-all-when-unstable = off
                }
              }
              coordinated-shutdown.exit-clr = off
              # The hosts run the shutdown themselves, bounded in time; Akka's own hook on process exit
              # blocked SIGTERM for good when a connection had failed (a refused TLS handshake).
              coordinated-shutdown.run-by-clr-shutdown-hook = off
            }
            disttrain.worker-dispatcher {
              type = PinnedDispatcher
            }
            """).WithFallback(ConfigurationFactory.ParseString(Serialization));

    /// A single-process system (tests, --in-process): no remoting, same serializer bindings.
    public static Config Local(bool serializeMessages = false) =>
        ConfigurationFactory.ParseString(
            $$"""
            akka {
              loglevel = WARNING
              loggers = ["DistTrain.Protocol.ConciseLogger, DistTrain.Protocol"]
              log-dead-letters = off
              actor.serialize-messages = {{(serializeMessages ? "on" : "off")}}
            }
            disttrain.worker-dispatcher {
              type = PinnedDispatcher
            }
            """).WithFallback(ConfigurationFactory.ParseString(Serialization));

    /// The address to listen on for a --host given as an IP or a name (its IPv4 address first), as
    /// Akka.Remote binds it; shared by the data plane and the status endpoint.
    public static System.Net.IPAddress BindAddress(string host) =>
        System.Net.IPAddress.TryParse(host, out var ip) ? ip
            : System.Net.Dns.GetHostAddresses(host).OrderBy(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 0 : 1).First();

    /// Leaves the cluster and stops remoting, giving up after `limit`: a transport whose connection
    /// attempts failed (for example a refused TLS handshake) may never report that it has shut down.
    /// False when the limit was reached.
    public static async Task<bool> ShutDownWithin(Akka.Actor.ActorSystem system, TimeSpan limit)
    {
        var shutdown = Akka.Actor.CoordinatedShutdown.Get(system).Run(Akka.Actor.CoordinatedShutdown.ClrExitReason.Instance);
        return await Task.WhenAny(shutdown, Task.Delay(limit)) == shutdown;
    }

    /// An actor system listening on host:port. A port that cannot be taken (in use, not allowed) is
    /// a PortUnavailableException naming `option` and the OS's reason, instead of the transport's
    /// nest of AggregateExceptions.
    public static Akka.Actor.ActorSystem StartSystem(Akka.Actor.Setup.ActorSystemSetup setup, string host, int port, string option)
    {
        try { return Akka.Actor.ActorSystem.Create(SystemName, setup); }
        catch (Exception e) when (Innermost(e) is System.Net.Sockets.SocketException or Akka.Remote.RemoteTransportException)
        {
            throw new PortUnavailableException($"{option} {port}: cannot listen on {host}:{port} ({Innermost(e).Message.ReplaceLineEndings(" ")})");
        }
    }

    /// The end of an exception's InnerException chain: the OS's reason under a transport's or a
    /// server's wrappers (Exception.GetBaseException stops at the first non-aggregate).
    public static Exception Innermost(Exception e)
    {
        while (e.InnerException is { } inner) e = inner;
        return e;
    }

    /// Akka.Remote names the transport in addresses: akka.ssl.tcp when TLS is on.
    public static string CoordinatorAddress(string host, int port, bool tls = false) => $"akka.{(tls ? "ssl." : "")}tcp://{SystemName}@{host}:{port}";
    public static string CoordinatorPath(string host, int port, bool tls = false) => $"{CoordinatorAddress(host, port, tls)}/user/{CoordinatorName}";

    // ---- Data plane
    /// A connection must finish its whole hello (greeting, path, MAC) within this, not each read:
    /// a trickling stranger is cut off.
    public static readonly TimeSpan DataPlaneHelloTimeout = TimeSpan.FromSeconds(10);
    /// A write to a successor that stopped reading (gone without a reset) fails after this
    /// instead of blocking the link for ever.
    public static readonly TimeSpan DataPlaneWriteTimeout = TimeSpan.FromSeconds(30);
    /// A successor whose data plane does not answer within this (a firewalled --data-port) gets
    /// the generation's chunks over Akka.Remote, so the ring does not wait for ever.
    public static readonly TimeSpan DataPlaneConnectPatience = TimeSpan.FromSeconds(10);
    /// Between attempts while the successor refuses connections (its process still starting).
    public static readonly TimeSpan DataPlaneConnectRetry = TimeSpan.FromMilliseconds(100);
    /// Connections that have not proved the job token yet, at most: each holds a thread for up to
    /// the hello timeout.
    public const int DataPlaneMaxUnproven = 32;
    public const int DataPlaneListenBacklog = 64;
    /// The longest ring path a sender may announce in its hello.
    public const int DataPlaneMaxPathBytes = 2048;
    /// The kernel's socket buffer of a connection, on each side: a few gradient parts in flight.
    public const int DataPlaneSocketBufferBytes = 4 << 20;
    /// Pooled chunk buffers kept per size: a step keeps up to about three times the gradient in
    /// flight (its chunks on both sides and the sender's two-step resend history).
    public const int DataPlanePooledBuffers = 1024;
}
