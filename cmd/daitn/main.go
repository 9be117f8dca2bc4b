// Command daitn runs a daitn node and drives a running one through its local
// control API. `daitn up` runs the node; most other subcommands find the
// running node from the data directory and talk to it.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

var rootCmd = &cobra.Command{
	Use:   "daitn",
	Short: "A peer-to-peer node for data-aware AI training and inference",
	Long: `daitn turns this machine into a peer of a Data-Aware Inference and Training
Network: it advertises what it has (data, models, compute, test sets), learns what
others have through a DHT and gossip, and moves models to data to train them.

Start with:  daitn demo        (a local federation that trains on MNIST)
        or:  daitn init && daitn up`,
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	pf := rootCmd.PersistentFlags()
	pf.String("data", "", "data directory (default $DAITN_DATA or ~/.daitn)")
	pf.Bool("json", false, "print JSON instead of tables")
}

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "daitn:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

// exitError carries a specific exit status.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
