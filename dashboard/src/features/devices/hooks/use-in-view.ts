// Whether an element is on (or near) the screen, with one IntersectionObserver for all of them:
// a card off screen does not subscribe to its device's live room.
import { useEffect, useState, type RefObject } from "react";

type Callback = (visible: boolean) => void;

let observer: IntersectionObserver | null = null;
const callbacks = new Map<Element, Callback>();

function shared(): IntersectionObserver {
  observer ??= new IntersectionObserver(
    (entries) => {
      for (const e of entries) callbacks.get(e.target)?.(e.isIntersecting);
    },
    { rootMargin: "400px 0px" },
  );
  return observer;
}

const supported = typeof IntersectionObserver === "function";

export function useInView(ref: RefObject<Element | null>): boolean {
  const [visible, setVisible] = useState(!supported);
  useEffect(() => {
    const el = ref.current;
    if (!supported || !el) return;
    const io = shared();
    callbacks.set(el, setVisible);
    io.observe(el);
    return () => {
      io.unobserve(el);
      callbacks.delete(el);
    };
  }, [ref]);
  return visible;
}
