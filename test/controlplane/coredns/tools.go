//go:build tools

// Package tools pins CoreDNS, which scripts/cluster/build.sh builds for the
// real-node cluster's DNS.
package tools

import (
	_ "github.com/coredns/coredns"
)
