package mailauth

import (
	"bytes"
	"context"
	"math/rand/v2"
	"time"
)

// A Result is the outcome of one method, in the words of RFC 8601 §2.7:
// SPF has all but policy, DKIM all but softfail, DMARC none, pass, fail,
// temperror and permerror.
type Result string

// The results.
const (
	None      Result = "none"
	Pass      Result = "pass"
	Fail      Result = "fail"
	SoftFail  Result = "softfail"
	Neutral   Result = "neutral"
	Policy    Result = "policy"
	TempError Result = "temperror"
	PermError Result = "permerror"
)

// A Checker checks what arrives: SPF at MAIL, DKIM and DMARC after DATA.
// Its zero value is not usable: Resolver is required. It is safe for
// concurrent use.
type Checker struct {
	Resolver Resolver // usually a Cache in front of a DNS
	Hostname string   // our name: SPF's %{r} (RFC 7208 §7.3)

	SPFTimeout    time.Duration    // bound on one SPF check; 0 means 20 s (RFC 7208 §4.6.4)
	DKIMTimeout   time.Duration    // bound on the DKIM key and DMARC lookups of one message; 0 means 20 s
	MaxSignatures int              // DKIM signatures verified per message; 0 means 5
	Now           func() time.Time // the clock; nil means time.Now
	Rand          func(n int) int  // DMARC's pct sampling, in [0,n); nil means math/rand/v2
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Checker) rand(n int) int {
	if c.Rand != nil {
		return c.Rand(n)
	}
	return rand.IntN(n)
}

// CheckMessage checks a whole message (header and body, as received)
// after DATA: its DKIM signatures, then DMARC with them and spf, the
// result of CheckSPF at MAIL; nil spf means SPF was not checked, and
// DMARC counts on DKIM alone. The verdict has spf in it, ready for
// AuthResults and Counters.
func (c *Checker) CheckMessage(ctx context.Context, spf *SPFResult, msg []byte) Verdict {
	v := Verdict{SPF: spf, DKIM: c.VerifyDKIM(ctx, bytes.NewReader(msg))}
	var s SPFResult
	if spf != nil {
		s = *spf
	}
	dmarc := c.EvalDMARC(ctx, msg, s, v.DKIM)
	v.DMARC = &dmarc
	return v
}
