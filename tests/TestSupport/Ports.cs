using System.Net;
using System.Net.Sockets;

namespace DistTrain.TestSupport;

public static class Ports
{
    /// A loopback port nobody listened on a moment ago (the system picks it; it may be taken again later).
    public static int Free()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
