// Command pause is the sandbox process of every pod on the Keyward test node (containerd's
// sandbox_image): it holds the pod's namespaces, reaps orphans when it is PID 1 of a shared PID
// namespace, and exits on SIGINT or SIGTERM. The same job as Kubernetes' pause.c, in Go because
// the node's other parts are built with Go already (scripts/cluster/node-images.ts builds it).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	child := make(chan os.Signal, 16)
	signal.Notify(child, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-child:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
