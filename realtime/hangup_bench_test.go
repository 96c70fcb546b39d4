package realtime

import (
	"net"
	"testing"
)

// BenchmarkHangupLook measures one look at an idle detached connection
// whose client stays: the cost per stream per hangupInterval.
func BenchmarkHangupLook(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const n = 1000
	conns := make([]Conn, n)
	for i := range conns {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		server, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer server.Close()
		conns[i] = server
	}
	l := newLook()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if l.hungUp(conns[i%n]) {
			b.Fatal("a client that stays was taken for gone")
		}
		i++
	}
}
