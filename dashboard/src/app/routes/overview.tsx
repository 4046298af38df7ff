export default function Page() {
  return <p>overview: to come</p>;
}
