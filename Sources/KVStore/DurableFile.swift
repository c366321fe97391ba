import Foundation

/// Crash-safe replacement of whole files: the new file is written under another name and
/// fsynced by the caller, renamed over the real name (rename is atomic: a reader sees the old
/// file or the new one, never neither), and then the folder is fsynced so the rename itself
/// survives a power loss.
public enum DurableFile {
    /// fsyncs the folder holding `path`, making a rename into it (or a file created in it) durable.
    public static func syncFolder(of path: String) throws {
        var dir = (path as NSString).deletingLastPathComponent
        if dir.isEmpty { dir = "." }
        let fd = open(dir, O_RDONLY | O_DIRECTORY)
        guard fd >= 0 else { throw StoreError.fileSystem(path: dir, reason: "cannot open the folder to sync it: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw StoreError.fileSystem(path: dir, reason: "fsync of the folder failed: \(String(cString: strerror(errno)))") }
    }

    /// Renames `partial` (already written and fsynced) over `path`, replacing any file there in
    /// one step, then syncs the folder. On failure `path` is untouched.
    public static func replace(_ path: String, with partial: String) throws {
        guard rename(partial, path) == 0 else {
            throw StoreError.fileSystem(path: path, reason: "cannot rename \(partial) over it: \(String(cString: strerror(errno)))")
        }
        try syncFolder(of: path)
    }
}
