using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using DistTrain.Protocol;

namespace DistTrain.Worker.DataPlane;

/// The data plane of a TLS job: each connection is a TLS session with mutual authentication under
/// the job's CA, the same rule as Akka.Remote's (<see cref="Tls"/>): both sides present their
/// node certificate and accept the other's only if it chains to the job's CA. Host names are not
/// checked. The job-token hello then runs inside the session, and every frame after it is
/// encrypted and authenticated, not only the hello.
static class DataPlaneTls
{
    /// The listener's side: the TLS handshake on an accepted connection. AuthenticationException
    /// (or IOException) when the peer is not of this job's CA.
    public static SslStream Accept(Stream connection, Tls tls)
    {
        var ssl = new SslStream(connection, leaveInnerStreamOpen: false);
        try
        {
            ssl.AuthenticateAsServer(new SslServerAuthenticationOptions
            {
                ServerCertificate = tls.Certificate,
                ClientCertificateRequired = true,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                RemoteCertificateValidationCallback = (_, peer, _, _) => Trusted(tls, peer),
            });
            return ssl;
        }
        catch { ssl.Dispose(); throw; }
    }

    /// The sender's side: the TLS handshake on a connection to `endpoint`.
    public static SslStream Connect(Stream connection, Tls tls, string endpoint)
    {
        var ssl = new SslStream(connection, leaveInnerStreamOpen: false);
        try
        {
            ssl.AuthenticateAsClient(new SslClientAuthenticationOptions
            {
                TargetHost = endpoint[..endpoint.LastIndexOf(':')],
                ClientCertificates = [tls.Certificate],
                LocalCertificateSelectionCallback = (_, _, _, _, _) => tls.Certificate,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                EnabledSslProtocols = SslProtocols.Tls12 | SslProtocols.Tls13,
                RemoteCertificateValidationCallback = (_, peer, _, _) => Trusted(tls, peer),
            });
            return ssl;
        }
        catch { ssl.Dispose(); throw; }
    }

    /// The job's CA decides, whatever the system's trust store or the host name say.
    static bool Trusted(Tls tls, X509Certificate? peer) => peer switch
    {
        null => false,
        X509Certificate2 c => tls.Trusts(c),
        _ => tls.Trusts(X509CertificateLoader.LoadCertificate(peer.GetRawCertData())),
    };
}
