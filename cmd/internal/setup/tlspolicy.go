package setup

import (
	"crypto/x509"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"smtpfs/internal/regfile"
	"smtpfs/smtp/tlspolicy"
	"smtpfs/smtpd/conf"
)

// TLSPolicy returns the TLS policy engine of outbound mail for the
// configuration: its tlspolicy lines, DNS from resolver, DANE through
// daneresolver (none without it), MTA-STS policies cached in
// <root>/lib/mta-sts/, findings logged to logger.
//
// Two settings of the environment are for tests: $SMTPFS_TLS_CA, a PEM
// file of the CAs to trust instead of the system's (for verify, mta-sts
// and the MTA-STS policy fetch), and $SMTPFS_MTASTS_PORT, the port of the
// HTTPS servers mta-sts.<domain> (443). $SMTPFS_SMTP_PORT, the port of MX
// hosts, names the TLSA records too (_<port>._tcp.<host>). A CA file that
// cannot be read is an error, and the engine then trusts the system's.
func TLSPolicy(c *conf.Config, root string, logger *log.Logger) (*tlspolicy.Engine, error) {
	e := &tlspolicy.Engine{
		Resolver:     c.Resolver,
		DANEResolver: c.DANEResolver,
		HTTPSPort:    os.Getenv("SMTPFS_MTASTS_PORT"),
		Port:         os.Getenv("SMTPFS_SMTP_PORT"),
		CacheDir:     filepath.Join(root, "lib", "mta-sts"),
		Policies:     c.TLSPolicy,
		Log:          logger,
	}
	if f := os.Getenv("SMTPFS_TLS_CA"); f != "" {
		pem, err := regfile.Read(f, conf.MaxPEM)
		if err != nil {
			return e, fmt.Errorf("$SMTPFS_TLS_CA %s: %v", f, regfile.Reason(err))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return e, fmt.Errorf("$SMTPFS_TLS_CA %s: no PEM certificate", f)
		}
		e.RootCAs = pool
	}
	return e, nil
}
