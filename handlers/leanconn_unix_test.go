//go:build unix

package handlers

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// TestLeanConn: the file that a stream's TCP connection becomes writes to
// the client, waits for a full socket no longer than its write deadline,
// is a socket the hangup watch can read, and closing it closes the
// client's connection; the connection it came from is closed.
func TestLeanConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := leanConn(server)
	f, ok := c.(*os.File)
	if !ok {
		t.Fatalf("leanConn returned a %T, want an *os.File", c)
	}
	if _, err := server.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the original connection still writes: %v", err)
	}
	if _, ok := c.(syscall.Conn); !ok {
		t.Fatal("the file is not a syscall.Conn: the hangup watch cannot read it")
	}
	if _, err := io.WriteString(c, "data: hi\n\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "data: hi\n\n" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	// A client that reads nothing: the write stops at its deadline.
	if err := c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 1<<20)
	done := make(chan error, 1)
	go func() {
		var err error
		for err == nil {
			_, err = f.Write(big)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("write to a full socket: %v, want a deadline exceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a write to a full socket outlived its deadline by seconds")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, client); err != nil {
		t.Fatalf("the client's connection did not end cleanly when the file closed: %v", err)
	}
}
