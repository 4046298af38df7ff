export default function Page() {
  return <p>alerts: to come</p>;
}
