package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Development CA files, under <data_dir>/tls.
const (
	devDirName    = "tls"
	devCACertName = "ca.crt"
	devCAKeyName  = "ca.key"
	devCertName   = "dev.crt"
	devKeyName    = "dev.key"

	devCAName       = "Moat Development CA"
	devCAValidYears = 10
	devLeafValidity = 365 * 24 * time.Hour
	// Certificates this close to expiry are replaced.
	devRenewBefore = 30 * 24 * time.Hour
	// A failed renewal during handshakes is retried at most this often.
	devRetryEvery = time.Hour
)

// defaultDevHosts are the names the development certificate covers when the
// config names none.
var defaultDevHosts = []string{"localhost", "127.0.0.1", "::1"}

// DevSource serves a certificate issued by a local development CA that Moat
// creates in its data directory. Nothing outside the data directory is
// changed: trusting the CA is left to the user (see TrustHint).
type DevSource struct {
	logger *slog.Logger
	dir    string
	dns    []string     // sorted
	ips    []netip.Addr // sorted
	caCert *x509.Certificate
	caKey  crypto.Signer

	cert atomic.Pointer[tls.Certificate]

	mu        sync.Mutex // serializes renewals during handshakes
	lastRenew time.Time
}

// EnsureDev makes sure that dataDir/tls (mode 0700) holds a development CA
// (ECDSA P-256, valid 10 years) and a certificate it issued, valid one year,
// for hosts: DNS names and IP addresses, by default localhost, 127.0.0.1 and
// ::1. Files from an earlier start are reused; the certificate is issued
// again when it is within 30 days of expiry, when hosts changed or when the
// CA changed. Keys are written with mode 0600, certificates 0644. A key
// file readable or writable by group or others is an error.
func EnsureDev(dataDir string, hosts []string, logger *slog.Logger) (*DevSource, error) {
	if dataDir == "" {
		return nil, errors.New("development tls: data directory is not set")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(hosts) == 0 {
		hosts = defaultDevHosts
	}
	d := &DevSource{
		logger: logger.With("component", "tls"),
		dir:    filepath.Join(dataDir, devDirName),
	}
	var err error
	if d.dns, d.ips, err = parseHosts(hosts); err != nil {
		return nil, fmt.Errorf("development tls: %w", err)
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return nil, fmt.Errorf("development tls: %w", err)
	}
	if err := os.Chmod(d.dir, 0o700); err != nil {
		return nil, fmt.Errorf("development tls: %w", err)
	}
	if err := d.ensureCA(); err != nil {
		return nil, fmt.Errorf("development tls: %w", err)
	}
	if err := d.ensureLeaf(); err != nil {
		return nil, fmt.Errorf("development tls: %w", err)
	}
	return d, nil
}

// CACertPath returns the path of the CA certificate, the file to trust.
func (d *DevSource) CACertPath() string { return filepath.Join(d.dir, devCACertName) }

// CertPath returns the path of the served certificate.
func (d *DevSource) CertPath() string { return filepath.Join(d.dir, devCertName) }

// TrustHint returns a few lines telling the user how to make clients trust
// the development CA. Moat never installs it anywhere itself.
func (d *DevSource) TrustHint() string {
	ca := d.CACertPath()
	host := "localhost"
	switch {
	case slices.Contains(d.dns, "localhost"):
	case len(d.dns) > 0:
		host = d.dns[0]
	case len(d.ips) > 0 && d.ips[0].Is4():
		host = d.ips[0].String()
	case len(d.ips) > 0:
		host = "[" + d.ips[0].String() + "]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Moat's development certificate is issued by a local CA: %s\n", ca)
	b.WriteString("Clients must trust that CA (Moat does not install it anywhere):\n")
	fmt.Fprintf(&b, "  curl:          curl --cacert %s https://%s:<port>/\n", ca, host)
	fmt.Fprintf(&b, "  Debian/Ubuntu: sudo cp %s /usr/local/share/ca-certificates/moat-dev-ca.crt && sudo update-ca-certificates\n", ca)
	fmt.Fprintf(&b, "  macOS:         sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain %s\n", ca)
	b.WriteString("  Firefox keeps its own list: Settings > Privacy & Security > Certificates > View Certificates > Authorities > Import.\n")
	b.WriteString("  Chrome uses the system list on macOS and Windows; on Linux import it in chrome://certificate-manager.\n")
	fmt.Fprintf(&b, "Whoever holds %s can issue certificates your machine will trust: keep it private, and remove the CA from the trust stores when done.\n",
		filepath.Join(d.dir, devCAKeyName))
	return b.String()
}

// GetCertificate returns the development certificate, issuing a new one
// first when it is within 30 days of expiry. It is safe for concurrent use.
func (d *DevSource) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := d.cert.Load()
	if time.Until(c.Leaf.NotAfter) < devRenewBefore {
		d.renewInHandshake()
		c = d.cert.Load()
	}
	return c, nil
}

func (d *DevSource) renewInHandshake() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if time.Until(d.cert.Load().Leaf.NotAfter) >= devRenewBefore || time.Since(d.lastRenew) < devRetryEvery {
		return
	}
	d.lastRenew = time.Now()
	if err := d.issueLeaf("expires within 30 days"); err != nil {
		d.logger.Error("renewing the development certificate failed", "error", err)
	}
}

// ensureCA loads the CA or creates it when it is missing, unusable or close
// to expiry.
func (d *DevSource) ensureCA() error {
	certPath, keyPath := d.CACertPath(), filepath.Join(d.dir, devCAKeyName)
	pair, err := loadDevPair(certPath, keyPath)
	reason := ""
	switch {
	case errors.Is(err, fs.ErrNotExist):
		reason = "none yet"
	case errors.Is(err, errKeyMode):
		return err
	case err != nil:
		reason = err.Error()
	case !pair.Leaf.IsCA:
		reason = "the certificate is not a CA"
	case time.Until(pair.Leaf.NotAfter) < devRenewBefore:
		reason = "it expires within 30 days"
	}
	if reason == "" {
		key, ok := pair.PrivateKey.(crypto.Signer)
		if !ok {
			return fmt.Errorf("%s: unsupported key type %T", keyPath, pair.PrivateKey)
		}
		d.caCert, d.caKey = pair.Leaf, key
		return nil
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id) // never fails
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   devCAName,
			Organization: []string{"Moat"},
			// Tells this CA apart from one created earlier or elsewhere.
			SerialNumber: hex.EncodeToString(id),
		},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(devCAValidYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return fmt.Errorf("creating the CA certificate: %w", err)
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return err
	}
	if d.caCert, err = x509.ParseCertificate(der); err != nil {
		return err
	}
	d.caKey = key
	if reason == "none yet" {
		d.logger.Info("development CA created", "ca_cert", certPath)
	} else {
		d.logger.Warn("development CA replaced; clients must trust the new one",
			"ca_cert", certPath, "reason", reason)
	}
	return nil
}

// ensureLeaf loads the served certificate or issues a new one when it is
// missing, unusable, near expiry, for other hosts or from another CA.
func (d *DevSource) ensureLeaf() error {
	pair, err := loadDevPair(d.CertPath(), filepath.Join(d.dir, devKeyName))
	reason := ""
	switch {
	case errors.Is(err, fs.ErrNotExist):
		reason = "none yet"
	case errors.Is(err, errKeyMode):
		return err
	case err != nil:
		reason = err.Error()
	case pair.Leaf.CheckSignatureFrom(d.caCert) != nil:
		reason = "issued by another CA"
	case time.Until(pair.Leaf.NotAfter) < devRenewBefore:
		reason = "expires within 30 days"
	case !d.coversExactly(pair.Leaf):
		reason = "host list changed"
	}
	if reason == "" {
		d.cert.Store(pair)
		return nil
	}
	return d.issueLeaf(reason)
}

// issueLeaf issues, writes and starts serving a new certificate.
func (d *DevSource) issueLeaf(reason string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	notAfter := now.Add(devLeafValidity)
	if notAfter.After(d.caCert.NotAfter) {
		notAfter = d.caCert.NotAfter
	}
	ips := make([]net.IP, 0, len(d.ips))
	for _, a := range d.ips {
		ips = append(ips, net.IP(a.AsSlice()))
	}
	cn := "moat development"
	if len(d.dns) > 0 {
		cn = d.dns[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Moat development"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     d.dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, d.caCert, key.Public(), d.caKey)
	if err != nil {
		return fmt.Errorf("issuing the development certificate: %w", err)
	}
	if err := writePair(d.CertPath(), filepath.Join(d.dir, devKeyName), der, key); err != nil {
		return err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	d.cert.Store(&tls.Certificate{
		Certificate: [][]byte{der},
		PrivateKey:  key,
		Leaf:        leaf,
	})
	d.logger.Info("development certificate issued", "cert", d.CertPath(), "reason", reason,
		"dns_names", d.dns, "ip_addresses", tmpl.IPAddresses, "not_after", notAfter.UTC().Format(time.RFC3339))
	return nil
}

// coversExactly reports whether leaf names exactly the wanted hosts.
func (d *DevSource) coversExactly(leaf *x509.Certificate) bool {
	dns := make([]string, 0, len(leaf.DNSNames))
	for _, n := range leaf.DNSNames {
		dns = append(dns, strings.ToLower(n))
	}
	slices.Sort(dns)
	ips := make([]netip.Addr, 0, len(leaf.IPAddresses))
	for _, ip := range leaf.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			ips = append(ips, a.Unmap())
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return slices.Equal(dns, d.dns) && slices.Equal(ips, d.ips)
}

// parseHosts splits hosts into sorted, de-duplicated DNS names and IP
// addresses.
func parseHosts(hosts []string) ([]string, []netip.Addr, error) {
	var dns []string
	var ips []netip.Addr
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); err == nil {
			ips = append(ips, a.Unmap().WithZone(""))
			continue
		}
		name := normalizeName(h)
		if name == "" || strings.ContainsAny(name, " :/\\@") {
			return nil, nil, fmt.Errorf("host %q: want a DNS name or an IP address", h)
		}
		dns = append(dns, name)
	}
	slices.Sort(dns)
	slices.SortFunc(ips, netip.Addr.Compare)
	return slices.Compact(dns), slices.Compact(ips), nil
}

var errKeyMode = errors.New("key file mode")

// loadDevPair loads a pair written by writePair, refusing a key that group
// or others can read.
func loadDevPair(certPath, keyPath string) (*tls.Certificate, error) {
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, err
	}
	if err := checkKeyMode(keyPath, fi); err != nil {
		return nil, fmt.Errorf("%w: %w", errKeyMode, err)
	}
	pair, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		return nil, err
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &pair, nil
}

// writePair writes a certificate (mode 0644) and its key (mode 0600), each
// replaced atomically.
func writePair(certPath, keyPath string, der []byte, key crypto.Signer) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

// writeFileAtomic writes data to a temporary file next to path, sets its
// mode (whatever the umask) and renames it over path.
func writeFileAtomic(path string, data []byte, mode os.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("writing %s: %w", path, err)
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// randomSerial returns a positive random 128-bit serial number.
func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
