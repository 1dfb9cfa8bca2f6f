//! Numbers as people read them: money, token counts, durations, sizes.

/// `$0.0042`, `$1.25`.
pub fn money(usd: f64) -> String {
    if usd > 0.0 && usd < 0.01 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

/// `950`, `22.0k`, `1.3M`.
pub fn tokens(count: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let value = count as f64;
    if count >= 1_000_000 {
        format!("{:.1}M", value / 1_000_000.0)
    } else if count >= 1_000 {
        format!("{:.1}k", value / 1_000.0)
    } else {
        count.to_string()
    }
}

/// `0.4s`, `12s`, `3m05s`, `1h02m`.
pub fn duration_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 10_000 {
        #[allow(clippy::cast_precision_loss, reason = "display only")]
        let seconds = ms as f64 / 1000.0;
        return format!("{seconds:.1}s");
    }
    let seconds = ms / 1000;
    if seconds >= 3600 {
        format!("{}h{:02}m", seconds / 3600, (seconds % 3600) / 60)
    } else if seconds >= 60 {
        format!("{}m{:02}s", seconds / 60, seconds % 60)
    } else {
        format!("{seconds}s")
    }
}

/// `512 B`, `14.2 KiB`, `3.1 MiB`.
pub fn bytes(count: u64) -> String {
    #[allow(clippy::cast_precision_loss, reason = "display only")]
    let value = count as f64;
    if count >= 1024 * 1024 {
        format!("{:.1} MiB", value / (1024.0 * 1024.0))
    } else if count >= 1024 {
        format!("{:.1} KiB", value / 1024.0)
    } else {
        format!("{count} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_naturally() {
        assert_eq!(money(0.0), "$0.00");
        assert_eq!(money(0.004_2), "$0.0042");
        assert_eq!(money(1.254), "$1.25");
        assert_eq!(tokens(950), "950");
        assert_eq!(tokens(22_000), "22.0k");
        assert_eq!(duration_ms(420), "0.4s");
        assert_eq!(duration_ms(12_000), "12s");
        assert_eq!(duration_ms(185_000), "3m05s");
        assert_eq!(duration_ms(3_720_000), "1h02m");
        assert_eq!(bytes(14_541), "14.2 KiB");
    }
}
