export default function Page() {
  return <p>device: to come</p>;
}
