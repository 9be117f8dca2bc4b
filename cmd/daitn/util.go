package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/daitn/daitn/oam"
)

// dataDir resolves the data directory: --data, then $DAITN_DATA, then ~/.daitn.
func dataDir(cmd *cobra.Command) (string, error) {
	d, _ := cmd.Flags().GetString("data")
	if d == "" {
		d = os.Getenv("DAITN_DATA")
	}
	if d == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no --data given, $DAITN_DATA unset and no home directory: %w", err)
		}
		d = filepath.Join(home, ".daitn")
	}
	abs, err := filepath.Abs(d)
	if err != nil {
		return "", fmt.Errorf("data directory %q: %w", d, err)
	}
	return abs, nil
}

// apiFromCmd connects to the node running on the command's data directory.
func apiFromCmd(cmd *cobra.Command) (*oam.Client, error) {
	d, err := dataDir(cmd)
	if err != nil {
		return nil, err
	}
	c, err := oam.Dial(d)
	if err != nil {
		if errors.Is(err, oam.ErrNotRunning) {
			return nil, fmt.Errorf("no node is running on %s: start one with `daitn up --data %s`", d, d)
		}
		return nil, err
	}
	return c, nil
}

func jsonOutput(cmd *cobra.Command) bool {
	j, _ := cmd.Flags().GetBool("json")
	return j
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// callNode connects to the running node and makes one API call: in (if not
// nil) is sent as JSON and the answer decoded into out (if not nil).
func callNode(cmd *cobra.Command, method, path string, in, out any) error {
	c, err := apiFromCmd(cmd)
	if err != nil {
		return err
	}
	return c.Call(cmd.Context(), method, path, in, out)
}

// listCmd is a command that GETs a list from route and prints it as JSON
// (--json) or as a table: header names the tab-separated columns, row
// formats one item the same way.
func listCmd[T any](use, short, route, header string, row func(T) string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var list []T
			if err := callNode(cmd, http.MethodGet, route, nil, &list); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, list)
			}
			tw := newTable(cmd.OutOrStdout())
			fmt.Fprintln(tw, header)
			for _, it := range list {
				fmt.Fprintln(tw, row(it))
			}
			return tw.Flush()
		},
	}
}

// showCmd is a command that GETs route+ID for its one argument and prints
// the answer as JSON (--json) or with show.
func showCmd[T any](use, short, route string, show func(w io.Writer, v T) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var v T
			if err := callNode(cmd, http.MethodGet, route+url.PathEscape(args[0]), nil, &v); err != nil {
				return err
			}
			if jsonOutput(cmd) {
				return printJSON(cmd, v)
			}
			return show(cmd.OutOrStdout(), v)
		},
	}
}
