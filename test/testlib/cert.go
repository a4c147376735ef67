package testlib

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A Cert is a throwaway self-signed certificate, written to files.
type Cert struct {
	CertFile string // PEM certificate
	KeyFile  string // PEM private key
	Both     string // PEM certificate followed by its key, in one file
	TLS      tls.Certificate
	X509     *x509.Certificate
	SHA256   string // hex SHA-256 of the DER certificate, for pinning
}

// NewCert makes a certificate for the given host names and IP addresses
// (localhost and 127.0.0.1 if none) in dir, valid for a day.
func NewCert(t testing.TB, dir string, hosts ...string) *Cert {
	t.Helper()
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: hosts[0]},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cpem := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kpem := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	c := &Cert{
		CertFile: filepath.Join(dir, "cert.pem"),
		KeyFile:  filepath.Join(dir, "cert.key"),
		Both:     filepath.Join(dir, "both.pem"),
	}
	for f, data := range map[string][]byte{c.CertFile: cpem, c.KeyFile: kpem, c.Both: append(cpem, kpem...)} {
		if err := os.WriteFile(f, data, 0600); err != nil {
			t.Fatal(err)
		}
	}
	if c.TLS, err = tls.X509KeyPair(cpem, kpem); err != nil {
		t.Fatal(err)
	}
	c.X509, _ = x509.ParseCertificate(der)
	sum := sha256.Sum256(der)
	c.SHA256 = hex.EncodeToString(sum[:])
	return c
}

// ServerConfig returns a TLS server configuration using the certificate.
func (c *Cert) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{c.TLS}}
}

// Pool returns a certificate pool that trusts the certificate.
func (c *Cert) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.X509)
	return p
}
