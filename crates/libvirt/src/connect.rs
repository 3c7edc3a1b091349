//! Opening the connection, as virsh does: `-c URI`, else `$LIBVIRT_DEFAULT_URI`, else libvirt's
//! own default (libvirt reads the variable itself when given no URI).

use virt::connect::Connect;

/// Opens a read-write connection to `uri` (None: libvirt's default).
pub fn open(uri: Option<&str>) -> anyhow::Result<Connect> {
    // libvirt's default error handler prints every error on stderr as well; phbguard reports
    // each one itself, once, with what it was doing.
    virt::error::clear_error_callback();
    Connect::open(uri).map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to libvirt at {}: {}",
            uri.map_or_else(|| "the default URI".to_owned(), |u| format!("'{u}'")),
            e.message()
        )
    })
}
