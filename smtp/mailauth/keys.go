package mailauth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"smtpfs/internal/regfile"
)

// The DKIM keys, in lib/dkim/ under the mail root:
//
//	lib/dkim/<domain>/<selector>.key
//
// one private key a file, PEM, PKCS#8 ("PRIVATE KEY"; PKCS#1 "RSA PRIVATE
// KEY" as written by other tools is read too), RSA of at least 1024 bits
// (RFC 8301 §3.2; new ones have 2048) or Ed25519 (RFC 8463). The domain is
// a directory named by the domain in lower case, the selector (RFC 6376
// §3.1) the file's name. A key file its group or others may read is
// refused, as lib/secrets is. Other files, and names starting with a dot,
// are ignored. A key is written once and never replaced: a new key is a
// new selector, published before it signs.
//
// Which selectors sign for a domain is chosen apart (the dkim verb): a
// key that exists signs only once chosen, so that it can be published
// first.

// A Key is one private key of a domain.
type Key struct {
	Domain    string
	Selector  string
	Algorithm string // "rsa" or "ed25519"
	Bits      int    // of an RSA key
	Signer    crypto.Signer
}

// A KeyStore holds the keys of lib/dkim and which of them sign. It is safe
// for concurrent use.
type KeyStore struct {
	dir  string
	mu   sync.RWMutex
	keys map[string]map[string]*Key // domain, selector
	sel  map[string][]string        // domain: the selectors that sign
}

// Bounds on lib/dkim.
const (
	maxKeys    = 1000
	maxKeyFile = 64 << 10
)

// OpenKeyStore reads the keys under dir (lib/dkim). A missing dir holds
// no keys. A key that cannot be read, or that others may read, is an
// error naming its file.
func OpenKeyStore(dir string) (*KeyStore, error) {
	ks := &KeyStore{dir: dir, sel: map[string][]string{}}
	if err := ks.Reload(); err != nil {
		return nil, err
	}
	return ks, nil
}

// Reload reads the keys again, keeping the choice of selectors. On error
// the keys read before stay.
func (ks *KeyStore) Reload() error {
	keys := map[string]map[string]*Key{}
	domains, err := os.ReadDir(ks.dir)
	if errors.Is(err, fs.ErrNotExist) {
		domains, err = nil, nil
	}
	if err != nil {
		return err
	}
	n := 0
	for _, d := range domains {
		if strings.HasPrefix(d.Name(), ".") || !d.IsDir() {
			continue
		}
		if !keyDomain(d.Name()) {
			return fmt.Errorf("invalid %s: not a domain name in lower case", filepath.Join(ks.dir, d.Name()))
		}
		m, err := ks.readDomain(d.Name())
		if err != nil {
			return err
		}
		if n += len(m); n > maxKeys {
			return fmt.Errorf("%s: more than %d keys", ks.dir, maxKeys)
		}
		if len(m) > 0 {
			keys[d.Name()] = m
		}
	}
	ks.mu.Lock()
	ks.keys = keys
	ks.mu.Unlock()
	return nil
}

// readDomain reads the keys of one domain.
func (ks *KeyStore) readDomain(domain string) (map[string]*Key, error) {
	dir := filepath.Join(ks.dir, domain)
	files, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	m := map[string]*Key{}
	for _, f := range files {
		sel, ok := strings.CutSuffix(f.Name(), ".key")
		if !ok || strings.HasPrefix(f.Name(), ".") || f.IsDir() {
			continue
		}
		if !selector(sel) {
			return nil, fmt.Errorf("invalid %s: %q is not a selector (RFC 6376 §3.1)", filepath.Join(dir, f.Name()), sel)
		}
		if len(m) == maxKeys {
			return nil, fmt.Errorf("%s: more than %d keys", dir, maxKeys)
		}
		k, err := readKey(filepath.Join(dir, f.Name()))
		if err != nil {
			return nil, err
		}
		k.Domain, k.Selector = domain, sel
		m[sel] = k
	}
	return m, nil
}

// readKey reads one key file.
func readKey(file string) (*Key, error) {
	// Only a regular file: a FIFO or a device put there must not hang
	// or flood a reload.
	f, fi, err := regfile.Open(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", file, regfile.Reason(err))
	}
	defer f.Close()
	if fi.Mode().Perm()&0077 != 0 {
		return nil, fmt.Errorf("permission denied: %s is readable by group or others (mode %v); chmod 600 it", file, fi.Mode().Perm())
	}
	if fi.Size() > maxKeyFile {
		return nil, fmt.Errorf("%s: too long for a key", file)
	}
	b := make([]byte, fi.Size())
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, err
	}
	k, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("invalid %s: %v", file, err)
	}
	return k, nil
}

// parseKey parses a PEM private key.
func parseKey(b []byte) (*Key, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	var priv any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		priv, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		priv, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY", blk.Type)
	}
	if err != nil {
		return nil, err
	}
	switch priv := priv.(type) {
	case *rsa.PrivateKey:
		if priv.N.BitLen() < 1024 {
			return nil, fmt.Errorf("RSA key of %d bits, fewer than 1024 (RFC 8301 §3.2)", priv.N.BitLen())
		}
		return &Key{Algorithm: "rsa", Bits: priv.N.BitLen(), Signer: priv}, nil
	case ed25519.PrivateKey:
		return &Key{Algorithm: "ed25519", Signer: priv}, nil
	}
	return nil, fmt.Errorf("a %T key, want RSA or Ed25519", priv)
}

// keyDomain reports whether s names a domain directory: a domain name in
// lower case, letters, digits, hyphens and underscores.
func keyDomain(s string) bool {
	return spfDomain(s) && s == strings.ToLower(s) && !strings.HasSuffix(s, ".") && !strings.HasPrefix(s, "-")
}

// selector reports whether s is a selector: dot-separated labels of
// letters, digits and hyphens (RFC 6376 §3.1), and underscores.
func selector(s string) bool {
	if !validName(s) || len(s) > maxLabel {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// Select chooses the selectors that sign for each domain (domain:
// selectors), in place of the choice before. Every selector chosen must
// have a key.
func (ks *KeyStore) Select(sel map[string][]string) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	for d, sels := range sel {
		for _, s := range sels {
			if ks.keys[d][s] == nil {
				return fmt.Errorf("invalid dkim %s %s: no key %s", d, s, filepath.Join(ks.dir, d, s+".key"))
			}
		}
	}
	ks.sel = map[string][]string{}
	for d, sels := range sel {
		ks.sel[d] = slices.Clone(sels)
	}
	return nil
}

// Signing returns the keys that sign for domain, in the order chosen.
func (ks *KeyStore) Signing(domain string) []*Key {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	var keys []*Key
	for _, s := range ks.sel[domain] {
		if k := ks.keys[domain][s]; k != nil {
			keys = append(keys, k)
		}
	}
	return keys
}

// Domains returns the domains that have keys, sorted.
func (ks *KeyStore) Domains() []string {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	var ds []string
	for d := range ks.keys {
		ds = append(ds, d)
	}
	sort.Strings(ds)
	return ds
}

// keysOf returns a domain's keys sorted by selector.
func (ks *KeyStore) keysOf(domain string) []*Key {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	var keys []*Key
	for _, k := range ks.keys[domain] {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Selector < keys[j].Selector })
	return keys
}

// NewKey makes a key for domain and selector, algorithm "rsa" (2048 bits)
// or "ed25519", and writes it to lib/dkim/<domain>/<selector>.key, mode
// 0600, at once and whole: written to a temporary file, synced, then
// linked in place, which fails if the selector has a key already.
func (ks *KeyStore) NewKey(domain, sel, algorithm string) (*Key, error) {
	if !keyDomain(domain) {
		return nil, fmt.Errorf("invalid dkim newkey: %q is not a domain name in lower case", domain)
	}
	if !selector(sel) {
		return nil, fmt.Errorf("invalid dkim newkey: %q is not a selector (RFC 6376 §3.1)", sel)
	}
	k, der, err := generate(algorithm)
	if err != nil {
		return nil, err
	}
	k.Domain, k.Selector = domain, sel
	ks.mu.Lock()
	defer ks.mu.Unlock()
	n := 0
	for _, m := range ks.keys {
		n += len(m)
	}
	if n >= maxKeys { // Reload would refuse one more
		return nil, fmt.Errorf("%s holds %d keys, the most it may: no new key", ks.dir, maxKeys)
	}
	if err := ks.write(domain, sel, der); err != nil {
		return nil, err
	}
	if ks.keys[domain] == nil {
		ks.keys[domain] = map[string]*Key{}
	}
	ks.keys[domain][sel] = k
	return k, nil
}

// generate makes a key and its PKCS#8 encoding.
func generate(algorithm string) (*Key, []byte, error) {
	var k *Key
	switch algorithm {
	case "rsa", "":
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, nil, err
		}
		k = &Key{Algorithm: "rsa", Bits: 2048, Signer: priv}
	case "ed25519":
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		k = &Key{Algorithm: "ed25519", Signer: priv}
	default:
		return nil, nil, fmt.Errorf("invalid dkim newkey: algorithm %q, want rsa or ed25519", algorithm)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.Signer)
	return k, der, err
}

// write writes a key file whole, refusing to replace one.
func (ks *KeyStore) write(domain, sel string, der []byte) error {
	dir := filepath.Join(ks.dir, domain)
	if err := os.MkdirAll(dir, 0700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+sel+".key.*") // mode 0600
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	err = pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	final := filepath.Join(dir, sel+".key")
	if err := os.Link(tmp, final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("invalid dkim newkey: %s exists; a key is never replaced, make a new selector", final)
		}
		return err
	}
	return syncDir(dir)
}

// syncDir makes a directory's new entries durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// DNSRecords returns the TXT records to publish for domain's keys (RFC
// 6376 §3.6.1, RFC 8463 §4), one line each in zone-file syntax, after a
// comment saying whether the key signs. The text is split into strings of
// at most 255 octets (RFC 1035 §3.3.14).
func (ks *KeyStore) DNSRecords(domain string) string {
	signing := map[string]bool{}
	for _, k := range ks.Signing(domain) {
		signing[k.Selector] = true
	}
	var b strings.Builder
	for _, k := range ks.keysOf(domain) {
		what := "not signing yet"
		if signing[k.Selector] {
			what = "signing"
		}
		size := "ed25519"
		if k.Algorithm == "rsa" {
			size = fmt.Sprintf("rsa %d bits", k.Bits)
		}
		fmt.Fprintf(&b, "; selector %s: %s, %s\n", k.Selector, size, what)
		fmt.Fprintf(&b, "%s._domainkey.%s. IN TXT %s\n", k.Selector, domain, txtStrings(keyRecord(k)))
	}
	return b.String()
}

// keyRecord is the text of a key's TXT record: p= is the public key, an
// RSA SubjectPublicKeyInfo or the 32 octets of an Ed25519 key, in base64.
func keyRecord(k *Key) string {
	var der []byte
	switch pub := k.Signer.Public().(type) {
	case ed25519.PublicKey:
		der = pub
	default:
		der, _ = x509.MarshalPKIXPublicKey(pub)
	}
	return fmt.Sprintf("v=DKIM1; k=%s; p=%s", k.Algorithm, base64.StdEncoding.EncodeToString(der))
}

// txtStrings quotes s as character-strings of at most 255 octets.
func txtStrings(s string) string {
	var parts []string
	for len(s) > 255 {
		parts = append(parts, `"`+s[:255]+`"`)
		s = s[255:]
	}
	return strings.Join(append(parts, `"`+s+`"`), " ")
}
