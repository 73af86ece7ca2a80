using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Akka.Actor;
using Akka.Actor.Setup;
using Akka.Configuration;
using Akka.Event;
using Akka.Remote.Transport.DotNetty;

namespace DistTrain.Protocol;

/// Thrown for TLS material a user gave that cannot be used; the message is one line naming the file.
public sealed class TlsConfigurationException(string message) : Exception(message);

/// Akka.Remote over TLS with mutual authentication: every node presents its certificate (a .pfx
/// from deploy/make-certs.sh) and accepts a peer only if the peer's certificate chains to the
/// job's own CA (ca.crt). The operating system's trust store plays no part, so a certificate from
/// any public CA is refused; host names are not checked (nodes are known by their CA, not by DNS).
public sealed class Tls
{
    public const string PasswordVariable = "DISTTRAIN_TLS_PASSWORD";

    Tls(X509Certificate2 certificate, X509Certificate2 authority)
    {
        Certificate = certificate;
        Authority = authority;
    }

    public X509Certificate2 Certificate { get; }
    public X509Certificate2 Authority { get; }

    /// Loads this node's certificate (with its private key) and the CA; the .pfx password comes
    /// from DISTTRAIN_TLS_PASSWORD (empty when unset).
    public static Tls Load(string certificatePath, string authorityPath, string? password = null)
    {
        password ??= Environment.GetEnvironmentVariable(PasswordVariable) ?? "";
        X509Certificate2 certificate, authority;
        try { certificate = X509CertificateLoader.LoadPkcs12FromFile(certificatePath, password); }
        catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException)
        {
            throw new TlsConfigurationException($"--tls-cert {certificatePath}: cannot load it as a .pfx with its private key " +
                                                $"(wrong {PasswordVariable}, or not a PKCS#12 file: {Flatten(e.Message)})");
        }
        if (!certificate.HasPrivateKey)
            throw new TlsConfigurationException($"--tls-cert {certificatePath}: holds no private key; expected NODE.pfx from deploy/make-certs.sh");
        try { authority = X509Certificate2.CreateFromPem(File.ReadAllText(authorityPath)); }
        catch (Exception e) when (e is IOException or CryptographicException or UnauthorizedAccessException or ArgumentException)
        {
            throw new TlsConfigurationException($"--tls-ca {authorityPath}: cannot read a PEM certificate from it ({Flatten(e.Message)})");
        }
        var tls = new Tls(certificate, authority);
        if (!tls.Trusts(certificate))
            throw new TlsConfigurationException($"--tls-cert {certificatePath}: not issued by the CA in {authorityPath} (or expired); peers would refuse it");
        return tls;
    }

    static string Flatten(string s) => s.ReplaceLineEndings(" ").Trim();

    /// True when `peer` chains to this job's CA and is valid now.
    public bool Trusts(X509Certificate2 peer)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(Authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(peer);
    }

    /// The actor system setup for a node: HOCON plus, with TLS, the DotNetty SSL setup.
    public static ActorSystemSetup Setup(Config config, Tls? tls)
    {
        var bootstrap = BootstrapSetup.Create().WithConfig(tls is null ? config
            : ConfigurationFactory.ParseString("akka.remote.dot-netty.tcp.enable-ssl = true").WithFallback(config));
        if (tls is null) return ActorSystemSetup.Create(bootstrap);
        var ssl = new DotNettySslSetup(tls.Certificate, suppressValidation: false, requireMutualAuthentication: true,
            validateCertificateHostname: false, customValidator: (peer, _, _, _, log) =>
            {
                if (peer is not null && tls.Trusts(peer)) return true;
                log?.Warning("refused a TLS peer: its certificate {0} is not issued by the job's CA", peer?.Subject ?? "(none)");
                return false;
            });
        return ActorSystemSetup.Create(bootstrap, ssl);
    }
}
