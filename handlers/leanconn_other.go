//go:build !unix

package handlers

import (
	"net"

	"github.com/switchboard-dev/switchboard/realtime"
)

// leanConn returns c: only unix systems duplicate a socket into a file.
func leanConn(c net.Conn) realtime.Conn { return c }
