//! The guest's global allocator: small blocks recycled through per-size
//! free lists in front of the system allocator.
//!
//! A stage allocates the same few sizes over and over: the host lowers every
//! event of a batch into strings the guest allocates (through
//! `cabi_realloc`), the stage makes a few short strings per event, and all of
//! it is freed before the next event or batch. The system allocator of
//! `wasm32-wasip2` (wasi-libc's dlmalloc) spends a few hundred instructions
//! on each `malloc`/`free` pair, and every instruction is metered for fuel;
//! taking a block off a free list and putting it back costs a few dozen.
//!
//! Blocks of up to [`MAX_CACHED`] bytes are rounded up to a multiple of
//! [`GRANULE`] (their *class*) and taken from the system allocator at that
//! size. Freed, they go onto their class's list instead of back to the
//! system, up to [`MAX_CACHED_BYTES_PER_CLASS`] per class; beyond that they
//! are returned. Nothing depends on how long a block lives, so long-lived
//! allocations (a stage's state, a cache) are as safe as per-call ones.
//!
//! Blocks kept on the lists are memory the system allocator cannot hand out
//! for other sizes. So that this never makes a stage run out of memory where
//! it would not have otherwise, a failed system allocation returns every
//! listed block to the system and tries once more.
//!
//! The host lowers a call's arguments (a batch of events: four strings each)
//! between calls, when no stage code runs. While it does (see
//! [`CachingAllocator::lowering`]), small blocks come from an *arena*
//! instead: a region handed out by bumping a pointer, each block counted when
//! freed, and the whole region reused once every block of it is free again
//! (normally when the batch is done). That makes allocating and freeing these
//! blocks a few instructions each. A block that lives on (a stage keeping an
//! input string) only keeps the region from being reused: allocations then
//! go to the lists, as without an arena. The region (64 KiB, doubling up to
//! 1 MiB for large batches) stays with the instance.
//!
//! WebAssembly without the `atomics` feature has a single thread, which is
//! what makes the unsynchronized lists sound; the allocator is installed
//! only there (see `lib.rs`; natively the module is built for its tests).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Size classes are multiples of this many bytes.
const GRANULE: usize = 16;
/// The largest block kept on a free list. (Events' `data` strings, a few
/// hundred bytes, are the largest blocks allocated once per event.)
const MAX_CACHED: usize = 2048;
const CLASSES: usize = MAX_CACHED / GRANULE;
/// How many bytes of free blocks one class may keep: enough for a batch of
/// 512 small events' strings to be allocated again from the lists.
const MAX_CACHED_BYTES_PER_CLASS: usize = 64 * 1024;
/// The alignment blocks are requested with, and the largest a cached
/// allocation may ask for (the system allocator's natural one, so blocks
/// come from plain `malloc`).
const ALIGN: usize = 8;
/// The arena's first region; it doubles (once free) after a batch did not
/// fit, up to [`ARENA_MAX`].
const ARENA_MIN: usize = 64 * 1024;
const ARENA_MAX: usize = 1024 * 1024;
/// The largest block taken from the arena (a batch's list of events is
/// larger, and comes once per call).
const ARENA_MAX_BLOCK: usize = 4096;

/// The SDK's allocator: see the module documentation.
pub struct CachingAllocator {
    lists: UnsafeCell<Lists>,
    arena: UnsafeCell<Arena>,
}

/// The region blocks are bumped from while the host lowers arguments.
struct Arena {
    /// Whether new small blocks come from the region (see [`lowering`]).
    active: bool,
    /// The region (`start == end == 0` while there is none).
    start: usize,
    end: usize,
    /// Where the next block goes.
    top: usize,
    /// Blocks handed out and not yet freed.
    live: usize,
    /// The size of the next region; 0 once the system could not give one.
    size: usize,
    /// A block did not fit since the region was last reused.
    overflowed: bool,
}

struct Lists {
    /// The first free block of each class (each free block holds a pointer
    /// to the next in its first bytes); null when empty.
    heads: [*mut u8; CLASSES],
    /// How many bytes each list holds (counted, not divided, on every push:
    /// a division is costly in the guest).
    bytes: [u32; CLASSES],
}

// SAFETY: wasm32 without the `atomics` feature has one thread: there is
// never a second one to race with. (Elsewhere the type is built only for the
// unit tests below, which use an instance on one thread and need no `Sync`.)
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for CachingAllocator {}

impl CachingAllocator {
    pub const fn new() -> Self {
        CachingAllocator {
            lists: UnsafeCell::new(Lists { heads: [ptr::null_mut(); CLASSES], bytes: [0; CLASSES] }),
            arena: UnsafeCell::new(Arena {
                active: false,
                start: 0,
                end: 0,
                top: 0,
                live: 0,
                size: ARENA_MIN,
                overflowed: false,
            }),
        }
    }

    /// Whether the host is lowering a call's arguments: true from the end of
    /// one export call to the start of the next (the SDK's glue sets it).
    pub fn lowering(&self, active: bool) {
        // SAFETY: single-threaded, and no other borrow of the arena is live.
        unsafe { (*self.arena.get()).active = active };
    }
}

impl Default for CachingAllocator {
    fn default() -> Self {
        Self::new()
    }
}

/// The class (list index) of a layout, or `None` when its blocks are not
/// cached (too large, or aligned more than the system's natural alignment).
#[inline(always)]
fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size();
    if size == 0 || size > MAX_CACHED || layout.align() > ALIGN {
        return None;
    }
    Some((size - 1) / GRANULE)
}

/// The layout a class's blocks are requested from the system with.
#[inline(always)]
fn class_layout(class: usize) -> Layout {
    // SAFETY: the size is a nonzero multiple of 16 ≤ MAX_CACHED, the
    // alignment a power of two: far from overflowing.
    unsafe { Layout::from_size_align_unchecked((class + 1) * GRANULE, ALIGN) }
}

/// The size of a class's blocks.
#[inline(always)]
fn class_size(class: usize) -> u32 {
    ((class + 1) * GRANULE) as u32
}

impl Lists {
    #[inline(always)]
    unsafe fn pop(&mut self, class: usize) -> *mut u8 {
        let block = self.heads[class];
        if !block.is_null() {
            // SAFETY: a listed block is ours, at least 16 bytes and aligned
            // to 8, and holds the next block's address.
            self.heads[class] = unsafe { block.cast::<*mut u8>().read() };
            self.bytes[class] -= class_size(class);
        }
        block
    }

    /// Puts `block` on its list; `false` when the list is full.
    #[inline(always)]
    unsafe fn push(&mut self, class: usize, block: *mut u8) -> bool {
        if self.bytes[class] + class_size(class) > MAX_CACHED_BYTES_PER_CLASS as u32 {
            return false;
        }
        // SAFETY: the block came from this class, so it has room for a
        // pointer and is aligned for one.
        unsafe { block.cast::<*mut u8>().write(self.heads[class]) };
        self.heads[class] = block;
        self.bytes[class] += class_size(class);
        true
    }

    /// Returns every listed block to the system allocator.
    #[cold]
    unsafe fn flush(&mut self) {
        for class in 0..CLASSES {
            loop {
                let block = unsafe { self.pop(class) };
                if block.is_null() {
                    break;
                }
                unsafe { System.dealloc(block, class_layout(class)) };
            }
        }
    }
}

impl Arena {
    /// Whether `block` is in the region.
    #[inline(always)]
    fn holds(&self, block: *mut u8) -> bool {
        (self.start..self.end).contains(&(block as usize))
    }

    /// A block from the region, or null when it does not fit (or there is
    /// no region and the system cannot give one).
    #[inline(always)]
    unsafe fn bump(&mut self, layout: Layout) -> *mut u8 {
        if self.start == 0 && !unsafe { self.grow() } {
            return ptr::null_mut();
        }
        let at = (self.top + layout.align() - 1) & !(layout.align() - 1);
        if at + layout.size() > self.end {
            self.overflowed = true;
            return ptr::null_mut();
        }
        self.top = at + layout.size();
        self.live += 1;
        at as *mut u8
    }

    /// Takes a region of `size` bytes from the system; `false` if it has
    /// none to give (the arena then stays off).
    #[cold]
    unsafe fn grow(&mut self) -> bool {
        if self.size == 0 {
            return false;
        }
        // SAFETY: a nonzero size far from overflowing, a power-of-two
        // alignment.
        let region = unsafe { System.alloc(Layout::from_size_align_unchecked(self.size, 16)) };
        if region.is_null() {
            self.size = 0;
            return false;
        }
        (self.start, self.top, self.end) = (region as usize, region as usize, region as usize + self.size);
        true
    }

    /// Counts a block of the region freed; the last one makes the region
    /// reusable (and, if a batch did not fit, to be replaced by a larger one).
    #[inline(always)]
    unsafe fn free(&mut self) {
        self.live -= 1;
        if self.live == 0 {
            self.top = self.start;
            if self.overflowed && self.size < ARENA_MAX {
                self.overflowed = false;
                unsafe { self.release() };
                self.size *= 2;
            }
        }
    }

    /// Gives the region back to the system; only when no block of it is live.
    #[cold]
    unsafe fn release(&mut self) {
        debug_assert_eq!(self.live, 0);
        if self.start != 0 {
            // SAFETY: the region was allocated with this layout.
            unsafe { System.dealloc(self.start as *mut u8, Layout::from_size_align_unchecked(self.end - self.start, 16)) };
            (self.start, self.top, self.end) = (0, 0, 0);
        }
    }
}

impl CachingAllocator {
    /// A fresh block from the system, returning the lists' blocks (and an
    /// unused arena region) to it and trying again if it has no memory left.
    #[inline(never)]
    unsafe fn system_alloc(&self, layout: Layout) -> *mut u8 {
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            return block;
        }
        // SAFETY: single-threaded, and no list or arena borrow is live.
        unsafe {
            (*self.lists.get()).flush();
            let arena = &mut *self.arena.get();
            if arena.live == 0 {
                arena.release();
            }
            System.alloc(layout)
        }
    }
}

unsafe impl GlobalAlloc for CachingAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY (all borrows below): single-threaded, and each borrow ends
        // before any call that could borrow again.
        let arena = unsafe { &mut *self.arena.get() };
        if arena.active && layout.size() != 0 && layout.size() <= ARENA_MAX_BLOCK {
            let block = unsafe { arena.bump(layout) };
            if !block.is_null() {
                return block;
            }
        }
        match class_of(layout) {
            Some(class) => {
                // SAFETY: single-threaded; the borrow ends before any call out.
                let block = unsafe { (*self.lists.get()).pop(class) };
                if !block.is_null() {
                    return block;
                }
                unsafe { self.system_alloc(class_layout(class)) }
            }
            None => unsafe { self.system_alloc(layout) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`.
        let arena = unsafe { &mut *self.arena.get() };
        if arena.holds(block) {
            unsafe { arena.free() };
            return;
        }
        match class_of(layout) {
            Some(class) => {
                // SAFETY: single-threaded; `block` was allocated with this
                // layout, so it belongs to this class.
                if unsafe { !(*self.lists.get()).push(class, block) } {
                    unsafe { System.dealloc(block, class_layout(class)) };
                }
            }
            None => unsafe { System.dealloc(block, layout) },
        }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY (all below): the caller guarantees `block` was allocated
        // with `layout` and that `new_size` is valid for its alignment.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if unsafe { (*self.arena.get()).holds(block) } {
            if new_size <= layout.size() {
                return block;
            }
            let moved = unsafe { self.alloc(new_layout) };
            if !moved.is_null() {
                unsafe {
                    ptr::copy_nonoverlapping(block, moved, layout.size());
                    self.dealloc(block, layout);
                }
            }
            return moved;
        }
        match (class_of(layout), class_of(new_layout)) {
            // Still fits the block it has (a class's blocks are its full size).
            (Some(old), Some(new)) if old == new => block,
            (None, None) => {
                let moved = unsafe { System.realloc(block, layout, new_size) };
                if !moved.is_null() {
                    return moved;
                }
                unsafe {
                    (*self.lists.get()).flush();
                    System.realloc(block, layout, new_size)
                }
            }
            _ => {
                let moved = unsafe { self.alloc(new_layout) };
                if !moved.is_null() {
                    unsafe {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                moved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycles_blocks_of_a_class_and_keeps_contents_on_realloc() {
        let allocator = CachingAllocator::new();
        let layout = |size| Layout::from_size_align(size, 1).unwrap();
        unsafe {
            let a = allocator.alloc(layout(20));
            allocator.dealloc(a, layout(20));
            // Same class (17..=32 bytes): the same block comes back.
            let b = allocator.alloc(layout(32));
            assert_eq!(a, b);
            b.copy_from(b"0123456789abcdef0123456789abcdef".as_ptr(), 32);
            // Growing within the class keeps the block; past it moves it.
            assert_eq!(allocator.realloc(b, layout(32), 30), b);
            let c = allocator.realloc(b, layout(30), 100);
            assert_eq!(std::slice::from_raw_parts(c, 30), b"0123456789abcdef0123456789abcd");
            let d = allocator.realloc(c, layout(100), 5000);
            assert_eq!(std::slice::from_raw_parts(d, 30), b"0123456789abcdef0123456789abcd");
            let e = allocator.realloc(d, layout(5000), 10);
            assert_eq!(std::slice::from_raw_parts(e, 10), b"0123456789");
            allocator.dealloc(e, layout(10));
            // Over-aligned layouts bypass the lists.
            let aligned = Layout::from_size_align(64, 64).unwrap();
            let f = allocator.alloc(aligned);
            assert_eq!(f as usize % 64, 0);
            allocator.dealloc(f, aligned);
        }
    }

    #[test]
    fn keeps_at_most_its_cap_per_class_and_flushes() {
        let allocator = CachingAllocator::new();
        let layout = Layout::from_size_align(1024, 8).unwrap();
        let class = class_of(layout).unwrap();
        unsafe {
            let blocks: Vec<*mut u8> = (0..100).map(|_| allocator.alloc(layout)).collect();
            for &block in &blocks {
                allocator.dealloc(block, layout);
            }
            let lists = &mut *allocator.lists.get();
            // 64 blocks of 1 KiB fill the class's 64 KiB.
            assert_eq!(lists.bytes[class], 64 * 1024);
            let mut listed = 0;
            let mut block = lists.heads[class];
            while !block.is_null() {
                listed += 1;
                block = block.cast::<*mut u8>().read();
            }
            assert_eq!(listed, 64);
            lists.flush();
            assert!(lists.bytes.iter().all(|&n| n == 0) && lists.heads.iter().all(|h| h.is_null()));
        }
    }

    #[test]
    fn bumps_inputs_while_lowering_and_reuses_the_region_once_free() {
        let allocator = CachingAllocator::new();
        let layout = |size, align| Layout::from_size_align(size, align).unwrap();
        let arena = || unsafe { &*allocator.arena.get() };
        unsafe {
            allocator.lowering(true);
            let a = allocator.alloc(layout(10, 1));
            let b = allocator.alloc(layout(24, 8));
            assert!(arena().holds(a) && arena().holds(b));
            assert_eq!(b as usize % 8, 0);
            assert!(b as usize >= a as usize + 10);
            // Too large for the arena.
            let big = allocator.alloc(layout(ARENA_MAX_BLOCK + 1, 1));
            assert!(!arena().holds(big));
            allocator.dealloc(big, layout(ARENA_MAX_BLOCK + 1, 1));
            allocator.lowering(false);
            // Stage code: from the lists.
            let c = allocator.alloc(layout(10, 1));
            assert!(!arena().holds(c));
            allocator.dealloc(c, layout(10, 1));
            // Growing an arena block moves it out, contents kept.
            a.copy_from(b"0123456789".as_ptr(), 10);
            let moved = allocator.realloc(a, layout(10, 1), 100);
            assert!(!arena().holds(moved));
            assert_eq!(std::slice::from_raw_parts(moved, 10), b"0123456789");
            allocator.dealloc(moved, layout(100, 1));
            assert_eq!(arena().live, 1);
            allocator.dealloc(b, layout(24, 8));
            // All free: the region starts over.
            assert_eq!((arena().live, arena().top), (0, arena().start));
            allocator.lowering(true);
            assert_eq!(allocator.alloc(layout(10, 1)) as usize, arena().start);
        }
    }

    #[test]
    fn a_batch_that_does_not_fit_falls_back_and_grows_the_region() {
        let allocator = CachingAllocator::new();
        let layout = Layout::from_size_align(1000, 1).unwrap();
        let arena = || unsafe { &*allocator.arena.get() };
        unsafe {
            allocator.lowering(true);
            let blocks: Vec<*mut u8> = (0..100).map(|_| allocator.alloc(layout)).collect();
            // 65 fit in the first 64 KiB region; the rest come from the lists.
            assert_eq!(blocks.iter().filter(|&&b| arena().holds(b)).count(), 65);
            assert!(arena().overflowed);
            for &block in &blocks {
                allocator.dealloc(block, layout);
            }
            // Freed whole, the region was given back to grow next time.
            assert_eq!((arena().start, arena().size, arena().overflowed), (0, 2 * ARENA_MIN, false));
            let blocks: Vec<*mut u8> = (0..100).map(|_| allocator.alloc(layout)).collect();
            assert!(blocks.iter().all(|&b| arena().holds(b)));
            // A block kept alive keeps the region from being reused, nothing worse.
            for &block in &blocks[1..] {
                allocator.dealloc(block, layout);
            }
            assert_eq!(arena().live, 1);
            let next = allocator.alloc(layout);
            assert!(arena().holds(next) && next as usize > blocks[99] as usize);
        }
    }
}
