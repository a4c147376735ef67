package mailauth

import "testing"

func TestCounters(t *testing.T) {
	var c Counters
	c.Add(Verdict{SPF: &SPFResult{Result: Pass}, DKIM: []DKIMResult{{Result: Pass}, {Result: Fail}}, DMARC: &DMARCResult{Result: Fail, Disposition: Reject}})
	c.Add(Verdict{SPF: &SPFResult{Result: Pass}})
	got := map[string]int64{}
	for _, n := range c.Snapshot() {
		got[n.Name] = n.Value
	}
	want := map[string]int64{"spf.pass": 2, "dkim.pass": 1, "dkim.fail": 1, "dmarc.fail": 1, "dmarc.reject": 1}
	for name, v := range got {
		if v != want[name] {
			t.Errorf("%s = %d, want %d", name, v, want[name])
		}
	}
	if len(got) != len(counterNames) || got["spf.none"] != 0 {
		t.Errorf("snapshot has %d counters, want all %d", len(got), len(counterNames))
	}
}
