package conf

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"smtpfs/smtp/tlspolicy"
)

// The TLS policy of outbound mail (smtp/tlspolicy says what each level
// means):
//
//	tlspolicy domain dane|mta-sts|verify|encrypt|may|none
//	tlspolicy domain default
//	daneresolver ip:port
//
// tlspolicy is a list, one line a domain; saying a domain again replaces
// its level, and level default takes its line away (the domain then gets
// what one without a line does: DANE, else MTA-STS, else may). clear
// tlspolicy takes every line away. daneresolver names the validating
// resolver whose AD bit DANE believes; without it there is no DANE.

// maxTLSPolicy bounds the tlspolicy lines.
const maxTLSPolicy = 10000

// setTLSPolicy is the tlspolicy verb.
func setTLSPolicy(c *Config, a []string) error {
	d, err := checkDomain(a[0])
	if err != nil {
		return fmt.Errorf("tlspolicy: %v", err)
	}
	if strings.ToLower(a[1]) == "default" {
		delete(c.TLSPolicy, d)
		return nil
	}
	l, err := tlspolicy.ParseLevel(strings.ToLower(a[1]))
	if err != nil {
		return fmt.Errorf("tlspolicy %s: %v", d, err)
	}
	if _, ok := c.TLSPolicy[d]; !ok && len(c.TLSPolicy) >= maxTLSPolicy {
		return fmt.Errorf("tlspolicy: at most %d domains", maxTLSPolicy)
	}
	if c.TLSPolicy == nil {
		c.TLSPolicy = map[string]tlspolicy.Level{}
	}
	c.TLSPolicy[d] = l
	return nil
}

// getTLSPolicy renders the tlspolicy lines, by domain.
func getTLSPolicy(c *Config) [][]string {
	var l [][]string
	for _, d := range slices.Sorted(maps.Keys(c.TLSPolicy)) {
		l = append(l, []string{d, c.TLSPolicy[d].String()})
	}
	return l
}

// checkDANEResolver checks the daneresolver's address: ip:port, as for
// resolver.
func checkDANEResolver(s string) (string, error) {
	if _, err := checkHostPort(s); err != nil {
		return "", fmt.Errorf("daneresolver takes the ip:port of a validating resolver, not %s", quote(s))
	}
	return s, nil
}
