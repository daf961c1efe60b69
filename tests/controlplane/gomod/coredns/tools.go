//go:build tools

// Package tools pins the command built from this module: CoreDNS, the cluster DNS of the real
// node (tests/node), so pods resolve Services by name.
package tools

import (
	_ "github.com/coredns/coredns"
)
