package main

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/metaflow-r/metaflow/batch"
	"github.com/metaflow-r/metaflow/engine/scheduler"
	"github.com/metaflow-r/metaflow/rpc"
	"github.com/metaflow-r/metaflow/shim"
)

func serveCmd() *cobra.Command {
	var socket, listen, tokenFile string
	var parentPID int
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the engine's gRPC API on a unix socket or on TCP (with a token)",
		Long: `Serve the engine's gRPC API.

  metaflow-engine serve --socket /private/dir/engine.sock
  METAFLOW_ENGINE_TOKEN=secret metaflow-engine serve --listen 127.0.0.1:7000

Clients set METAFLOW_ENGINE_ADDRESS (unix:///path or host:port) and, for TCP,
METAFLOW_ENGINE_TOKEN. The R package starts an embedded engine on its own
when METAFLOW_ENGINE_ADDRESS is unset.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (socket == "") == (listen == "") {
				return errors.New("serve needs exactly one of --socket PATH or --listen HOST:PORT")
			}
			if os.Getenv("GOGC") == "" {
				// The engine's live heap is small (tens of MB at 10,000
				// splits): collecting half as often costs little memory
				// and a third of its CPU per task (tests/bench/foreach_scale.R).
				debug.SetGCPercent(200)
			}
			stopProfile, perr := cpuProfile(os.Getenv("METAFLOW_ENGINE_CPUPROFILE"))
			if perr != nil {
				return perr
			}
			defer stopProfile()
			var ln net.Listener
			var token string
			var err error
			if socket != "" {
				ln, err = rpc.ListenUnix(socket)
			} else {
				token, err = readToken(tokenFile)
				if err != nil {
					return err
				}
				ln, err = net.Listen("tcp", listen)
			}
			if err != nil {
				return err
			}
			if parentPID > 0 {
				// Embedded: leave the terminal's session so Ctrl-C reaches only
				// the R client, which then cancels the run through us.
				_, _ = syscall.Setsid()
			}
			if err := setHeartbeat(os.Getenv("METAFLOW_ENGINE_HEARTBEAT_SECONDS")); err != nil {
				return err
			}
			cleanLeftovers(os.Stderr)
			warm, err := shim.WarmStartEnabled(os.Getenv(shim.WarmStartEnv))
			if err != nil {
				return err
			}
			local, err := shim.NewLocal()
			if err != nil {
				return err
			}
			var exec interface {
				scheduler.Executor
				Close() error
			} = local
			if warm {
				// Local tasks fork from a per-run R process that has loaded
				// the run's code and packages (docs/ARCHITECTURE.md, "Warm task starts").
				w := shim.NewWarm(local)
				w.Refused = func(why string) {
					fmt.Fprintf(os.Stderr, "metaflow-engine: tasks start a fresh Rscript (no warm start): %s\n", why)
				}
				exec = w
			}
			defer exec.Close()
			srv := rpc.NewServer(exec)
			if err := registerExecutors(srv.Executors); err != nil {
				return err
			}
			gs := rpc.NewGRPCServer(srv, token)
			// What stops the engine says how its runs end: cancelled (a
			// signal, Shutdown: remote jobs are terminated) or abandoned
			// (the R session died: remote jobs run on, to their timeout).
			stop := make(chan error, 1)
			stopWith := func(cause error) {
				select {
				case stop <- cause:
				default:
				}
			}
			if parentPID > 0 {
				srv.OnShutdown = func() { stopWith(nil) }
				go watchParent(parentPID, func() { stopWith(scheduler.ErrAbandoned) })
			}
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			go func() { <-sigs; stopWith(nil) }()
			go func() {
				cause := <-stop
				// Long enough for a cancelled Batch job's TerminateJob to
				// be retried (METAFLOW_BATCH_TERMINATE_TIMEOUT, 30 s).
				srv.CancelAll(cancelGrace, cause)
				done := make(chan struct{})
				go func() { gs.GracefulStop(); close(done) }()
				select {
				case <-done:
				case <-time.After(2 * time.Second):
					gs.Stop()
				}
			}()
			if listen != "" {
				fmt.Fprintf(os.Stderr, "metaflow-engine %s serving on %s\n", version, ln.Addr())
			}
			err = gs.Serve(ln)
			if socket != "" {
				os.Remove(socket)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "unix socket path (its folder must be private)")
	cmd.Flags().StringVar(&listen, "listen", "", "TCP address, e.g. 127.0.0.1:7000 (requires a token)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the token (default: $METAFLOW_ENGINE_TOKEN)")
	cmd.Flags().IntVar(&parentPID, "parent-pid", 0, "exit when this process dies (embedded engine)")
	return cmd
}

// cancelGrace bounds how long a stopping engine waits for its runs to
// end: their tasks killed, their Batch jobs terminated (retried for up to
// METAFLOW_BATCH_TERMINATE_TIMEOUT, 30 s by default).
const cancelGrace = 75 * time.Second

// setHeartbeat sets how often running runs refresh their heartbeat, from
// METAFLOW_ENGINE_HEARTBEAT_SECONDS ("" keeps the default).
func setHeartbeat(v string) error {
	if v == "" {
		return nil
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || !(secs > 0) || math.IsInf(secs, 0) {
		return fmt.Errorf("METAFLOW_ENGINE_HEARTBEAT_SECONDS must be a positive number of seconds, got %q", v)
	}
	scheduler.HeartbeatInterval = time.Duration(secs * float64(time.Second))
	return nil
}

// cleanLeftovers removes the temp folders (task runtimes, private working
// folders) of engines that are gone (killed with kill -9, machine
// rebooted); folders of live engines are kept. A failure only warns.
func cleanLeftovers(w io.Writer) {
	for _, clean := range []func() ([]string, error){shim.CleanRuntimes, scheduler.CleanWorkdirs} {
		if _, err := clean(); err != nil {
			fmt.Fprintf(w, "metaflow-engine: warning: leftovers of stopped engines were not all removed: %v\n", err)
		}
	}
}

// registerExecutors registers the executors step decorators choose: AWS
// Batch for the batch decorator (--with batch), configured from the
// environment when a run first needs it, and its batch list|kill and logs of
// running jobs. A further executor is one more plugin here.
func registerExecutors(reg *scheduler.Registry) error {
	if err := reg.Register(batch.Decorator, batch.NewPlugin()); err != nil {
		return fmt.Errorf("register the AWS Batch executor: %w", err)
	}
	return nil
}

func readToken(file string) (string, error) {
	tok := os.Getenv("METAFLOW_ENGINE_TOKEN")
	if file != "" {
		st, err := os.Stat(file)
		if err != nil {
			return "", fmt.Errorf("read token file: %w", err)
		}
		// A secret others can read is no secret.
		if st.Mode().Perm()&0o077 != 0 {
			return "", fmt.Errorf("token file %s can be read by others (mode %v): chmod 600 %s", file, st.Mode().Perm(), file)
		}
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read token file: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if len(tok) < 16 {
		return "", errors.New("serving on TCP needs a token of at least 16 characters: set METAFLOW_ENGINE_TOKEN or pass --token-file")
	}
	return tok, nil
}

// watchParent stops the engine when the R process that started it is gone.
func watchParent(pid int, stop func()) {
	for {
		time.Sleep(300 * time.Millisecond)
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			stop()
			return
		}
	}
}

// cpuProfile writes the engine's CPU profile to path until stop (for
// benchmarks: `go tool pprof`); "" profiles nothing.
func cpuProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("METAFLOW_ENGINE_CPUPROFILE: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("METAFLOW_ENGINE_CPUPROFILE: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
