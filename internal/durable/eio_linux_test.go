package durable

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A file whose writeback failed before its batch was synced fails the
// batch, even when the file system's error was already reported to an
// earlier syncfs. It needs a real writeback error: an ext4 file system
// on a loop device backed by a file on a full tmpfs, with the blocks of
// one file punched out of the backing file, so that writing them back
// fails while the journal and everything else is written. Root only, and
// only with SMTPFS_TEST_EIO=1: it mounts file systems.
func TestFlushEarlierWritebackError(t *testing.T) {
	if os.Getuid() != 0 || os.Getenv("SMTPFS_TEST_EIO") != "1" {
		t.Skip("needs root and SMTPFS_TEST_EIO=1 (mounts a tmpfs and a loop device)")
	}
	if !kernelSyncfsOK() {
		t.Skip("this kernel's syncfs is not used")
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	base := t.TempDir()
	back, mnt := filepath.Join(base, "back"), filepath.Join(base, "mnt")
	os.Mkdir(back, 0700)
	os.Mkdir(mnt, 0700)
	run("mount", "-t", "tmpfs", "-o", "size=80m", "tmpfs", back)
	t.Cleanup(func() { exec.Command("umount", back).Run() })
	disk := filepath.Join(back, "disk")
	run("truncate", "-s", "64M", disk)
	run("mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", disk)
	run("fallocate", "-o", "0", "-l", "64M", disk) // every block backed
	loop := run("losetup", "-f", "--show", disk)
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	run("mount", loop, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })

	// X's blocks: allocated in ext4, absent from the full backing file.
	xpath := filepath.Join(mnt, "X")
	run("fallocate", "-l", "1M", xpath)
	run("sync")
	m := regexp.MustCompile(`(?m)^\s*0:\s+0\.\.\s*\d+:\s+(\d+)\.\.\s*(\d+):`).FindStringSubmatch(run("filefrag", "-v", xpath))
	if m == nil {
		t.Fatal("no extent for X in filefrag -v")
	}
	first, _ := strconv.Atoi(m[1])
	last, _ := strconv.Atoi(m[2])
	run("fallocate", "-p", "-o", strconv.Itoa(first*4096), "-l", strconv.Itoa((last-first+1)*4096), disk)
	exec.Command("dd", "if=/dev/zero", "of="+filepath.Join(back, "filler"), "bs=1M").Run() // until ENOSPC

	earlier, err := os.Open(mnt)
	if err != nil {
		t.Fatal(err)
	}
	defer earlier.Close()
	x, err := os.OpenFile(xpath, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if _, err := x.WriteAt([]byte(strings.Repeat("x", 1<<20)), 0); err != nil {
		t.Fatal(err)
	}
	unix.Sync() // the flusher writes X back, and fails
	if err := unix.Syncfs(int(earlier.Fd())); err == nil {
		t.Fatal("no writeback error: the set-up did not work")
	}
	// An earlier batch has seen the file system's error; X's batch comes
	// next, its syncfs through a file opened since.
	y, err := os.Create(filepath.Join(mnt, "Y"))
	if err != nil {
		t.Fatal(err)
	}
	defer y.Close()
	y.WriteString("a message")
	if err := Flush([]*os.File{y, x}); err == nil {
		t.Error("Flush of a batch holding a file whose writeback failed: no error")
	}
}
