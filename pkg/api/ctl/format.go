package ctl

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/photon-init/photon-init/pkg/api"
	"github.com/photon-init/photon-init/pkg/boot/timeline"
)

// psTable prints the containers as a table:
//
//	NAME  STATE    PID  RESTARTS  IMAGE         PORTS         STATUS
//	web   running  42   2         demo/web:1.0  8080->80/tcp  up 5m (healthy)
func (c *cmd) psTable(list []api.ContainerInfo) error {
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tPID\tRESTARTS\tIMAGE\tPORTS\tSTATUS")
	for _, ci := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n",
			ci.Name, ci.State, dash(pidString(ci.Pid)), ci.Restarts, dash(ci.Image),
			dash(portsString(ci.Ports)), dash(c.status(ci)))
	}
	return tw.Flush()
}

// status is ps's STATUS column: how long it runs and its health, or how
// it ended and when, or the reason for its state.
func (c *cmd) status(ci api.ContainerInfo) string {
	now := c.env.Now()
	switch {
	case ci.State == "running" && !ci.StartedAt.IsZero():
		s := "up " + humanDuration(now.Sub(ci.StartedAt))
		if ci.Health != nil {
			s += " (" + ci.Health.Status + ")"
		}
		return s
	case ci.LastExit != nil && !ci.FinishedAt.IsZero() && (ci.State == "exited" || ci.State == "stopped"):
		return exitString(*ci.LastExit) + ", " + humanDuration(now.Sub(ci.FinishedAt)) + " ago"
	}
	reason, _, _ := strings.Cut(ci.Reason, "\n")
	return reason
}

// inspectText prints one container as "key: value" lines.
func (c *cmd) inspectText(ci api.ContainerInfo) {
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 8, 1, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	line("name", ci.Name)
	state := ci.State
	if ci.Reason != "" {
		state += " (" + ci.Reason + ")"
	}
	line("state", state)
	line("pid", pidString(ci.Pid))
	image := ci.Image
	if ci.ImageDigest != "" {
		image += " (" + ci.ImageDigest + ")"
	}
	line("image", image)
	line("started", c.timeString(ci.StartedAt))
	line("finished", c.timeString(ci.FinishedAt))
	line("restarts", strconv.Itoa(ci.Restarts))
	if ci.LastExit != nil {
		line("last exit", exitString(*ci.LastExit))
	}
	if h := ci.Health; h != nil {
		s := h.Status
		if h.FailingStreak > 0 {
			s += fmt.Sprintf(", %d failed in a row", h.FailingStreak)
		}
		if !h.LastCheck.IsZero() {
			s += ", last check " + c.timeString(h.LastCheck)
		}
		line("health", s)
		if out := strings.TrimSpace(h.LastOutput); out != "" {
			line("health output", strings.ReplaceAll(out, "\n", " | "))
		}
	}
	line("network", ci.Network)
	line("addresses", strings.Join(ci.Addresses, ", "))
	line("ports", portsString(ci.Ports))
	line("file", ci.File)
	tw.Flush()
}

// timeString is an absolute time with how long ago it was.
func (c *cmd) timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339) + " (" + humanDuration(c.env.Now().Sub(t)) + " ago)"
}

// eventLine is one event for people.
func eventLine(e api.Event) string {
	s := e.Time.Format("2006-01-02T15:04:05.000Z07:00") + " " + e.Container + " "
	if e.From != "" {
		s += e.From + " -> "
	}
	s += e.To
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s + "\n"
}

// timelineTable prints the boot timeline.
func (c *cmd) timelineTable(doc *timeline.Document) error {
	tw := tabwriter.NewWriter(c.env.Stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTART\tEND\tDURATION\tSTATUS")
	for _, s := range doc.Steps {
		name := s.Name
		if s.Phase != "" {
			name = s.Phase + "/" + s.Name
		}
		end, took, status := "-", "-", "running"
		if s.End >= 0 {
			end = seconds(s.End)
			took = fmt.Sprintf("%.1fms", float64(s.Duration().Microseconds())/1000)
			status = "ok"
		}
		if s.Error != "" {
			first, _, _ := strings.Cut(s.Error, "\n")
			status = "FAILED: " + first
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", name, seconds(s.Start), end, took, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.env.Stdout, "PID 1 started %s after the kernel", seconds(doc.PID1Start))
	if doc.Complete > 0 {
		fmt.Fprintf(c.env.Stdout, "; boot complete at %s (%s after PID 1)", seconds(doc.Complete), seconds(doc.Complete-doc.PID1Start))
	} else {
		fmt.Fprint(c.env.Stdout, "; boot not complete")
	}
	_, err := fmt.Fprintln(c.env.Stdout)
	return err
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3fs", d.Seconds()) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func pidString(pid int) string {
	if pid == 0 {
		return ""
	}
	return strconv.Itoa(pid)
}

// portsString is "8080->80/tcp, 127.0.0.1:53->53/udp".
func portsString(ports []api.Port) string {
	var out []string
	for _, p := range ports {
		s := fmt.Sprintf("%d->%d/%s", p.HostPort, p.ContainerPort, p.Protocol)
		if p.HostIP != "" {
			s = p.HostIP + ":" + s
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// exitString is "exit 0", "exit 137 (SIGKILL, OOM killed)".
func exitString(e api.Exit) string {
	s := fmt.Sprintf("exit %d", e.Code)
	var notes []string
	if e.Signal != "" {
		notes = append(notes, e.Signal)
	}
	if e.OOM {
		notes = append(notes, "OOM killed")
	}
	if len(notes) > 0 {
		s += " (" + strings.Join(notes, ", ") + ")"
	}
	return s
}

// humanDuration is a short rounded duration: 45s, 12m, 5h, 3d.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
