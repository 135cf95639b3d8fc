//! Where encoders write: a `Vec<u8>`, or a buffer on the stack for a frame of bounded size
//! (an ack), which then needs no allocation.

use std::ops::DerefMut;

/// A growable byte buffer an encoder appends to.
pub trait ByteBuf: DerefMut<Target = [u8]> {
    fn push(&mut self, byte: u8);
    fn extend_from_slice(&mut self, bytes: &[u8]);
    fn reserve(&mut self, additional: usize);
    fn resize(&mut self, len: usize, value: u8);
}

impl ByteBuf for Vec<u8> {
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte);
    }
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes);
    }
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional);
    }
    fn resize(&mut self, len: usize, value: u8) {
        Vec::resize(self, len, value);
    }
}

/// A buffer of at most `N` bytes on the stack, for frames whose size is bounded (acks).
/// Writing past `N` is a bug in the caller's bound, and panics.
#[derive(Debug, Clone)]
pub(crate) struct ArrayBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for ArrayBuf<N> {
    fn default() -> Self {
        ArrayBuf { buf: [0; N], len: 0 }
    }
}

impl<const N: usize> std::ops::Deref for ArrayBuf<N> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> DerefMut for ArrayBuf<N> {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.len]
    }
}

impl<const N: usize> ByteBuf for ArrayBuf<N> {
    #[inline]
    fn push(&mut self, byte: u8) {
        self.buf[self.len] = byte;
        self.len += 1;
    }
    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }
    fn reserve(&mut self, _additional: usize) {}
    fn resize(&mut self, len: usize, value: u8) {
        if len > self.len {
            self.buf[self.len..len].fill(value);
        }
        self.len = len;
    }
}
