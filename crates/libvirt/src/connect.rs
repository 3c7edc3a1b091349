//! Opening the connection, as virsh does: `-c URI`, else `$LIBVIRT_DEFAULT_URI`, else libvirt's
//! own default (libvirt reads the variable itself when given no URI).

use virt::connect::Connect;

/// Opens a read-write connection to `uri` (None: libvirt's default): for what defines guests
/// (`fix --domain`, `watch`).
pub fn open(uri: Option<&str>) -> anyhow::Result<Connect> {
    opened(uri, Connect::open)
}

/// Opens a read-only connection (`virConnectOpenReadOnly`, virsh's `-r`): for what only reads
/// (`audit`, `groups`). libvirtd serves it on its read-only socket, which an unprivileged user
/// (a monitoring agent) may use, and such a connection cannot change a guest by mistake.
pub fn open_read_only(uri: Option<&str>) -> anyhow::Result<Connect> {
    opened(uri, Connect::open_read_only)
}

fn opened(
    uri: Option<&str>,
    open: fn(Option<&str>) -> Result<Connect, virt::error::Error>,
) -> anyhow::Result<Connect> {
    // libvirt's default error handler prints every error on stderr as well; phbguard reports
    // each one itself, once, with what it was doing.
    virt::error::clear_error_callback();
    open(uri).map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to libvirt at {}: {}",
            uri.map_or_else(|| "the default URI".to_owned(), |u| format!("'{u}'")),
            e.message()
        )
    })
}
