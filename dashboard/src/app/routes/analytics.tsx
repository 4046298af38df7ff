export default function Page() {
  return <p>analytics: to come</p>;
}
