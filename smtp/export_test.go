package smtp

import "context"

// SetShuffle replaces the random order of equal MX preferences.
func (c *Client) SetShuffle(f func(n int, swap func(i, j int))) { c.shuffle = f }

// RouteHosts returns the names of the hosts Deliver would try for dest, in
// order, and for each its addresses (looked up).
func (c *Client) RouteHosts(ctx context.Context, dest string) ([]string, error) {
	d, err := ParseDialString(dest)
	if err != nil {
		return nil, err
	}
	hops, err := c.route(ctx, d)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, h := range hops {
		s := h.name + ":" + h.port
		addrs, err := c.addrs(ctx, h)
		if err != nil {
			s += " " + err.Error()
		}
		for _, a := range addrs {
			s += " " + a.String()
		}
		out = append(out, s)
	}
	return out, nil
}
