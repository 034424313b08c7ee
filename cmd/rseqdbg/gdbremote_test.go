package main

import "testing"

func TestListenAddress(t *testing.T) {
	for _, c := range []struct {
		spec, addr string
		loopback   bool
		bad        bool
	}{
		{spec: ":1234", addr: "127.0.0.1:1234", loopback: true},
		{spec: "1234", addr: "127.0.0.1:1234", loopback: true},
		{spec: ":0", addr: "127.0.0.1:0", loopback: true},
		{spec: "localhost:9", addr: "localhost:9", loopback: true},
		{spec: "[::1]:9", addr: "[::1]:9", loopback: true},
		{spec: "0.0.0.0:9", addr: "0.0.0.0:9"},
		{spec: "10.1.2.3:9", addr: "10.1.2.3:9"},
		{spec: "host", bad: true},
		{spec: ":99999", bad: true},
		{spec: ":x", bad: true},
	} {
		addr, loopback, err := listenAddress(c.spec)
		if (err != nil) != c.bad || !c.bad && (addr != c.addr || loopback != c.loopback) {
			t.Errorf("listenAddress(%q) = %q, %v, %v", c.spec, addr, loopback, err)
		}
	}
}
