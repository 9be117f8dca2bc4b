package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/daitn/daitn/oam"
	"github.com/daitn/daitn/oam/dashboard"
)

func init() { rootCmd.AddCommand(dashboardCmd()) }

func dashboardCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "dashboard [--print]",
		Short: "Open the running node's web dashboard in a browser",
		Long: `Prints the address of the running node's web dashboard and opens it in a
browser. The address carries the API token after '#': the browser keeps that
part to itself (it is never sent to the node or anywhere else), and the page
moves it out of the address bar into the tab's session storage.

--print only prints the address. Use it on a machine without a desktop (open
the address through an SSH tunnel to the API port), and on a machine shared
with other users: a browser started with the address shows it, token
included, in its command line, which other local users can list.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := dataDir(cmd)
			if err != nil {
				return err
			}
			c, err := apiFromCmd(cmd)
			if err != nil {
				return err
			}
			// A killed node leaves api.addr behind: ask the node, so a dead
			// address is reported here rather than opened.
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			if err := c.Call(ctx, http.MethodGet, "/v1/id", nil, nil); err != nil {
				return fmt.Errorf("node on %s does not answer (start it with `daitn up --data %s`): %w", d, d, err)
			}
			addr, tok, err := oam.Endpoint(d)
			if err != nil {
				return err
			}
			u := dashboard.URL(addr, tok)
			fmt.Fprintln(cmd.OutOrStdout(), u)
			if p, _ := cmd.Flags().GetBool("print"); p {
				return nil
			}
			// Not opening a browser is never an error: the address is printed.
			if err := openBrowser(u); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "could not open a browser (%v); open the address above yourself\n", err)
			}
			return nil
		},
	}
	c.Flags().Bool("print", false, "only print the address, do not open a browser")
	return c
}

// openBrowser hands u to the desktop's URL opener and waits a little for it
// to report failure.
func openBrowser(u string) error {
	var c *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		c = exec.Command("open", u)
	case "windows":
		c = exec.Command("rundll32", "url.dll,FileProtocolHandler", u)
	default:
		// Without a graphical session xdg-open falls back to a text browser,
		// which would take over this terminal.
		if os.Getenv("DISPLAY") == "" && os.Getenv("WAYLAND_DISPLAY") == "" {
			return errors.New("no graphical session ($DISPLAY and $WAYLAND_DISPLAY unset)")
		}
		c = exec.Command("xdg-open", u)
	}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start %s: %w", c.Path, err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s: %w", c.Args[0], err)
		}
		return nil
	case <-time.After(5 * time.Second):
		// Some openers stay until the browser exits; the browser has the
		// address by now.
		return nil
	}
}
