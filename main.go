// Command switchboard is a realtime server: records, events and RPC over
// plain HTTP and Server-Sent Events. See the README. The server itself is
// package server; main only sets up signals and hands it the OpenAPI
// document, which stays at the repository's root and so is embedded here.
package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchboard-dev/switchboard/server"
)

//go:embed openapi.yaml
var openapiYAML []byte

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := server.Run(ctx, os.Args, os.Getenv, os.Stdout, openapiYAML); err != nil {
		fmt.Fprintln(os.Stderr, "switchboard:", err)
		var e interface{ ExitCode() int }
		if errors.As(err, &e) {
			os.Exit(e.ExitCode())
		}
		os.Exit(1)
	}
}
