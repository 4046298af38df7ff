import { Component, type ErrorInfo, type ReactNode } from "react";

interface Props {
  area: string;
  children: ReactNode;
}

/** One per area of the page: a failing chart does not take the page down with it. */
export class ErrorBoundary extends Component<Props, { error: Error | null }> {
  state = { error: null as Error | null };

  static getDerivedStateFromError(error: Error) {
    return { error };
  }

  componentDidCatch(error: Error, info: ErrorInfo) {
    console.error(`${this.props.area} failed`, error, info.componentStack);
  }

  render() {
    if (this.state.error) {
      return (
        <div role="alert" className="panel error">
          <strong>{this.props.area} could not be shown.</strong> {this.state.error.message}{" "}
          <button type="button" onClick={() => this.setState({ error: null })}>
            Try again
          </button>
        </div>
      );
    }
    return this.props.children;
  }
}
