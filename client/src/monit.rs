//! The `pmd monit` screen: what it shows ([`Screen`], fed by StreamMetrics
//! samples and the selected instance's log lines), how it is drawn
//! ([`draw`], pure over any ratatui backend, so tests draw it into a
//! `TestBackend` of a fixed size), and the terminal it takes over
//! ([`TerminalGuard`]: raw mode, alternate screen, hidden cursor, all
//! undone on drop and by a panic hook).
//!
//! The streams themselves are driven by `commands::monit`.

use std::collections::VecDeque;
use std::io::{self, Stdout};
use std::sync::Once;
use std::time::Duration;

use crossterm::{cursor, execute, terminal};
use pmdaemon_proto::v1::{
    HealthState, LogLine, LogStream, ProcessInfo, ProcessMetrics, ProcessState,
    StreamMetricsResponse,
};
use ratatui::Frame;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use crate::render;

/// Log lines of the selected instance kept for display.
pub const LOG_KEEP: usize = 200;

/// History lines asked for when the selection changes.
pub const LOG_HISTORY: u32 = 20;

/// One instance at the latest sample.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    pub id: u32,
    pub name: String,
    pub state: ProcessState,
    pub pid: Option<u32>,
    pub cpu_percent: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub restarts: u32,
    pub started_at_ms: Option<i64>,
    pub health: HealthState,
    pub port: Option<u32>,
}

impl From<&ProcessMetrics> for InstanceRow {
    fn from(m: &ProcessMetrics) -> Self {
        InstanceRow {
            id: m.id,
            name: m.name.clone(),
            state: m.state(),
            pid: m.pid,
            cpu_percent: m.cpu_percent,
            memory_bytes: m.memory_bytes,
            restarts: m.restarts,
            started_at_ms: m.started_at_ms,
            health: m.health(),
            port: m.port,
        }
    }
}

/// The sample as the `ProcessInfo` that `list` renders, for the snapshot
/// printed when stdout is not a terminal.
pub fn as_process_info(m: &ProcessMetrics) -> ProcessInfo {
    let mut info = ProcessInfo {
        id: m.id,
        name: m.name.clone(),
        pid: m.pid,
        restarts: m.restarts,
        started_at_ms: m.started_at_ms,
        port: m.port,
        cpu_percent: m.cpu_percent,
        memory_bytes: m.memory_bytes,
        ..Default::default()
    };
    info.set_state(m.state());
    info.set_health(m.health());
    info
}

/// A log line of the selected instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stderr: bool,
    pub text: String,
}

/// Everything the screen shows.
#[derive(Debug, Clone)]
pub struct Screen {
    pub rows: Vec<InstanceRow>,
    /// The selected row's id; kept across samples while it exists.
    selected_id: Option<u32>,
    /// The selected instance's latest log lines, oldest first.
    pub logs: VecDeque<LogEntry>,
    /// Lines the log stream skipped because this reader fell behind.
    pub missed_lines: u64,
    /// Why the log panel is empty, if it failed.
    pub log_error: Option<String>,
    pub interval: Duration,
    /// When the latest sample was taken (0: none yet).
    pub at_ms: i64,
}

impl Screen {
    pub fn new(interval: Duration) -> Screen {
        Screen {
            rows: Vec::new(),
            selected_id: None,
            logs: VecDeque::new(),
            missed_lines: 0,
            log_error: None,
            interval,
            at_ms: 0,
        }
    }

    pub fn selected_id(&self) -> Option<u32> {
        self.selected_id
    }

    /// Index of the selected row.
    pub fn selected_index(&self) -> Option<usize> {
        let id = self.selected_id?;
        self.rows.iter().position(|r| r.id == id)
    }

    /// Takes a new sample. Returns true when the selected instance changed
    /// (it went away, or this is the first sample): the log stream must
    /// follow the new one.
    pub fn update(&mut self, sample: &StreamMetricsResponse) -> bool {
        let old_index = self.selected_index().unwrap_or(0);
        self.rows = sample.processes.iter().map(InstanceRow::from).collect();
        self.at_ms = sample.at_ms;
        let before = self.selected_id;
        if self.selected_index().is_none() {
            // Gone (or nothing selected yet): the row now at its place.
            let index = old_index.min(self.rows.len().saturating_sub(1));
            self.selected_id = self.rows.get(index).map(|r| r.id);
        }
        self.selected_id != before
    }

    /// Moves the selection by `delta` rows (clamped). Returns true when it
    /// changed.
    pub fn move_selection(&mut self, delta: isize) -> bool {
        if self.rows.is_empty() {
            return false;
        }
        let index = self.selected_index().unwrap_or(0);
        let last = self.rows.len() - 1;
        let next = index.saturating_add_signed(delta).min(last);
        let id = self.rows[next].id;
        let changed = self.selected_id != Some(id);
        self.selected_id = Some(id);
        changed
    }

    /// Forgets the log lines (the selection changed).
    pub fn reset_logs(&mut self) {
        self.logs.clear();
        self.missed_lines = 0;
        self.log_error = None;
    }

    /// Adds lines from the log stream, keeping the last [`LOG_KEEP`].
    pub fn push_logs(&mut self, lines: &[LogLine], missed: u64) {
        self.missed_lines += missed;
        for line in lines {
            self.logs.push_back(LogEntry {
                stderr: line.stream() == LogStream::Stderr,
                text: String::from_utf8_lossy(&line.data).into_owned(),
            });
        }
        while self.logs.len() > LOG_KEEP {
            self.logs.pop_front();
        }
    }
}

fn state_color(state: ProcessState) -> Color {
    match state {
        ProcessState::Online => Color::Green,
        ProcessState::Errored => Color::Red,
        ProcessState::Stopped | ProcessState::Unspecified => Color::DarkGray,
        _ => Color::Yellow,
    }
}

fn health_color(health: HealthState) -> Color {
    match health {
        HealthState::Healthy => Color::Green,
        HealthState::Unhealthy => Color::Red,
        _ => Color::Yellow,
    }
}

/// Draws the screen: the instance table (selection highlighted), the
/// selected instance's log lines, and a key help line.
pub fn draw(frame: &mut Frame, screen: &Screen, now_ms: i64) {
    let area = frame.area();
    // Table: header, rows, borders; at most about half the screen.
    let wanted = u16::try_from(screen.rows.len().max(1) + 3).unwrap_or(u16::MAX);
    let table_height = wanted.min((area.height / 2).max(5));
    let [table_area, log_area, help_area] = Layout::vertical([
        Constraint::Length(table_height),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);

    let count = screen.rows.len();
    let title = format!(
        " pmd monit · {count} {} · every {} ",
        if count == 1 { "process" } else { "processes" },
        humantime::format_duration(screen.interval)
    );
    let header = Row::new(
        [
            "ID", "NAME", "STATUS", "HEALTH", "CPU", "MEM", "RESTARTS", "UPTIME", "PORT",
        ]
        .map(Cell::from),
    )
    .style(Style::new().add_modifier(Modifier::BOLD));
    let dash = || "-".to_string();
    let rows = screen.rows.iter().map(|r| {
        let running = r.pid.is_some();
        let uptime = r
            .started_at_ms
            .filter(|_| running)
            .map(|s| u64::try_from(now_ms.saturating_sub(s)).unwrap_or(0));
        let health = render::health_word(r.health);
        Row::new([
            Cell::from(r.id.to_string()),
            Cell::from(r.name.clone()).style(Style::new().fg(Color::Cyan)),
            Cell::from(r.state.word()).style(Style::new().fg(state_color(r.state))),
            Cell::from(health.unwrap_or("-"))
                .style(Style::new().fg(health.map_or(Color::Reset, |_| health_color(r.health)))),
            Cell::from(render::format_cpu(r.cpu_percent.filter(|_| running))),
            Cell::from(render::format_memory(r.memory_bytes.filter(|_| running))),
            Cell::from(r.restarts.to_string()),
            Cell::from(uptime.map_or_else(dash, render::short_duration)),
            Cell::from(r.port.map_or_else(dash, |p| p.to_string())),
        ])
    });
    // Names as wide as the longest (within reason); spare width stays at
    // the right.
    let name_width = screen
        .rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(4, 32)
        + 1;
    let widths = [
        Constraint::Length(4),
        Constraint::Length(u16::try_from(name_width).unwrap_or(33)),
        Constraint::Length(15),
        Constraint::Length(9),
        Constraint::Length(7),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(5),
    ];
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title(title))
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = TableState::default().with_selected(screen.selected_index());
    frame.render_stateful_widget(table, table_area, &mut state);

    let selected = screen.selected_index().map(|i| &screen.rows[i]);
    let log_title = match selected {
        Some(r) => {
            let mut t = format!(" {} (id {})", r.name, r.id);
            if let Some(pid) = r.pid {
                t += &format!(" · pid {pid}");
            }
            if let Some(port) = r.port {
                t += &format!(" · port {port}");
            }
            t + " · logs "
        }
        None => " logs ".to_string(),
    };
    let inner_height = usize::from(log_area.height.saturating_sub(2));
    let mut lines: Vec<Line> = Vec::new();
    if let Some(error) = &screen.log_error {
        lines.push(Line::styled(error.clone(), Style::new().fg(Color::Red)));
    } else if screen.rows.is_empty() {
        lines.push(Line::styled(
            "no process yet: start one with `pmd start`",
            Style::new().fg(Color::DarkGray),
        ));
    } else if screen.logs.is_empty() {
        lines.push(Line::styled(
            "no log lines yet",
            Style::new().fg(Color::DarkGray),
        ));
    }
    if screen.missed_lines > 0 {
        lines.push(Line::styled(
            format!("[missed {} lines]", screen.missed_lines),
            Style::new().fg(Color::Yellow),
        ));
    }
    let room = inner_height.saturating_sub(lines.len());
    let skip = screen.logs.len().saturating_sub(room);
    lines.extend(screen.logs.iter().skip(skip).map(|entry| {
        let style = if entry.stderr {
            Style::new().fg(Color::Red)
        } else {
            Style::new()
        };
        Line::styled(entry.text.clone(), style)
    }));
    let logs = Paragraph::new(lines).block(Block::bordered().title(log_title));
    frame.render_widget(logs, log_area);

    let help = Line::from(vec![
        Span::styled(" ↑/↓ j/k", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(" select  "),
        Span::styled("q", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(" quit"),
    ]);
    frame.render_widget(Paragraph::new(help), help_area);
}

/// The terminal while `monit` runs: raw mode (keys arrive one by one,
/// Ctrl-C as a key), the alternate screen, no cursor. Dropping the guard,
/// or a panic anywhere, puts the terminal back as it was.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Undoes what [`TerminalGuard::enter`] did; harmless when repeated.
pub fn restore_terminal() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
}

/// Installs (once) a panic hook that restores the terminal before the
/// previous hook prints the panic, so the message is readable.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
    });
}

impl TerminalGuard {
    pub fn enter() -> io::Result<TerminalGuard> {
        install_panic_hook();
        terminal::enable_raw_mode()?;
        // From here on a failure must undo the raw mode.
        let setup = || -> io::Result<Terminal<CrosstermBackend<Stdout>>> {
            execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)?;
            Terminal::new(CrosstermBackend::new(io::stdout()))
        };
        match setup() {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore_terminal();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;

    const NOW: i64 = 1_700_000_000_000;

    fn metrics(id: u32, name: &str, state: ProcessState) -> ProcessMetrics {
        let running = state == ProcessState::Online;
        let mut m = ProcessMetrics {
            id,
            name: name.into(),
            pid: running.then_some(4000 + id),
            cpu_percent: running.then_some(12.5),
            memory_bytes: running.then_some(35_861_709),
            restarts: id,
            started_at_ms: running.then_some(NOW - 300_000),
            port: running.then_some(3000 + id),
            ..Default::default()
        };
        m.set_state(state);
        m
    }

    fn sample() -> StreamMetricsResponse {
        let mut api = metrics(0, "api", ProcessState::Online);
        api.set_health(HealthState::Healthy);
        StreamMetricsResponse {
            at_ms: NOW,
            processes: vec![
                api,
                metrics(1, "api", ProcessState::Online),
                metrics(2, "worker", ProcessState::Errored),
            ],
        }
    }

    /// The screen's text, one string per terminal line, trailing blanks cut.
    fn render(screen: &Screen, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, screen, NOW)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..height)
            .map(|y| {
                let line: String = (0..width).map(|x| buffer[(x, y)].symbol()).collect();
                line.trim_end().to_string()
            })
            .collect()
    }

    /// Drawn into an 80x16 screen: the table with the first row selected,
    /// then the selected instance's logs, then the help line.
    #[test]
    fn the_screen_at_a_fixed_size() {
        let mut screen = Screen::new(Duration::from_secs(1));
        assert!(screen.update(&sample()), "the first sample selects a row");
        let line = |data: &[u8], stream: LogStream| LogLine {
            data: data.to_vec(),
            stream: stream.into(),
            ..Default::default()
        };
        screen.push_logs(
            &[
                line(b"listening on 3000", LogStream::Stdout),
                line(b"warning: slow", LogStream::Stderr),
            ],
            0,
        );
        let lines = render(&screen, 80, 16);
        let text = lines.join("\n");
        assert_eq!(
            lines[0],
            "┌ pmd monit · 3 processes · every 1s ──────────────────────────────────────────┐"
        );
        assert_eq!(
            lines[1],
            "│  ID   NAME    STATUS          HEALTH    CPU     MEM     RESTARTS UPTIME PORT │"
        );
        assert_eq!(
            lines[2],
            "│> 0    api     online          healthy   12.5%   34.2M   0        5m     3000 │"
        );
        assert_eq!(
            lines[3],
            "│  1    api     online          -         12.5%   34.2M   1        5m     3001 │"
        );
        assert_eq!(
            lines[4],
            "│  2    worker  errored         -         -       -       2        -      -    │"
        );
        assert!(
            lines[6].starts_with("┌ api (id 0) · pid 4000 · port 3000 · logs ─"),
            "{text}"
        );
        assert_eq!(
            lines[7],
            "│listening on 3000                                                             │"
        );
        assert!(lines[8].starts_with("│warning: slow "), "{text}");
        assert_eq!(lines[15], " ↑/↓ j/k select  q quit");
    }

    /// The selection follows its instance across samples, moves within the
    /// table, and falls on a neighbour when its instance goes away.
    #[test]
    fn selection_follows_the_instance() {
        let mut screen = Screen::new(Duration::from_secs(1));
        screen.update(&sample());
        assert_eq!(screen.selected_id(), Some(0));
        assert!(screen.move_selection(1));
        assert!(screen.move_selection(5), "clamped to the last row");
        assert_eq!(screen.selected_id(), Some(2));
        assert!(!screen.move_selection(1));
        // Same instances again, in another order: still id 2.
        let mut reordered = sample();
        reordered.processes.reverse();
        assert!(!screen.update(&reordered));
        assert_eq!(screen.selected_id(), Some(2));
        assert_eq!(screen.selected_index(), Some(0));
        // id 2 is deleted: the row at its place is selected.
        let mut fewer = reordered;
        fewer.processes.remove(0);
        assert!(screen.update(&fewer));
        assert_eq!(screen.selected_id(), Some(1));
        assert!(screen.move_selection(1));
        assert_eq!(screen.selected_id(), Some(0));
    }

    /// No process: an empty table and a hint; the log panel keeps the
    /// last lines that fit.
    #[test]
    fn empty_and_long_log_panels() {
        let mut screen = Screen::new(Duration::from_millis(500));
        screen.update(&StreamMetricsResponse::default());
        let text = render(&screen, 60, 12).join("\n");
        assert!(text.contains("0 processes · every 500ms"), "{text}");
        assert!(
            text.contains("no process yet: start one with `pmd start`"),
            "{text}"
        );

        screen.update(&sample());
        let lines: Vec<LogLine> = (0..300)
            .map(|i| LogLine {
                data: format!("line {i}").into_bytes(),
                ..Default::default()
            })
            .collect();
        screen.push_logs(&lines, 7);
        assert_eq!(screen.logs.len(), LOG_KEEP);
        let text = render(&screen, 60, 16).join("\n");
        assert!(text.contains("[missed 7 lines]"), "{text}");
        assert!(text.contains("line 299"), "{text}");
        assert!(!text.contains("line 290\n"), "{text}");
        screen.reset_logs();
        assert!(screen.logs.is_empty() && screen.missed_lines == 0);
    }

    /// Off a terminal, monit prints `list`'s table from one sample.
    #[test]
    fn snapshot_is_the_list_table() {
        let infos: Vec<ProcessInfo> = sample().processes.iter().map(as_process_info).collect();
        let views = render::ProcessView::all(&infos, NOW);
        let text = render::table(&views, crate::term::Colours::OFF);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ID  NAME    PID   STATUS   HEALTH   PORT  RESTARTS  UPTIME  CPU    MEM",
                "0   api     4000  online   healthy  3000  0         5m      12.5%  34.2M",
                "1   api     4001  online   -        3001  1         5m      12.5%  34.2M",
                "2   worker  -     errored  -        -     2         -       -      -",
            ]
        );
    }
}
